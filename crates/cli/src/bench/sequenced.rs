//! The throughput payloads, a `#[repr(C)]` type per size whose first word is its sequence
//! number: streamed by `shmlane bench --mode throughput` and by the benches package's
//! `throughput` bench (which includes this file), so both measure the same types.

use std::fmt::Debug;

use shmlane::{FromBytes, Immutable, IntoBytes, KnownLayout, ZeroCopy};

/// A payload that carries a sequence number in its first word.
pub trait Sequenced: ZeroCopy + Copy + Debug {
    /// The value carrying `seq` (the rest zero).
    fn with_seq(seq: u64) -> Self;
    /// Its sequence number.
    fn seq(&self) -> u64;
    /// Writes its sequence number (nothing else).
    fn set_seq(&mut self, seq: u64);
}

/// Defines a payload type of `$bytes` bytes: a sequence number and padding.
macro_rules! payloads {
    ($($name:ident = $bytes:expr),* $(,)?) => {$(
        #[doc = concat!("A ", stringify!($bytes), "-byte payload: a sequence number and padding.")]
        #[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
        #[zerocopy(crate = "shmlane::zerocopy")]
        #[repr(C)]
        pub struct $name {
            seq: u64,
            pad: [u8; $bytes - 8],
        }

        const _: () = assert!(size_of::<$name>() == $bytes);

        impl Sequenced for $name {
            fn with_seq(seq: u64) -> Self {
                $name { seq, pad: [0; $bytes - 8] }
            }
            #[inline(always)]
            fn seq(&self) -> u64 {
                self.seq
            }
            #[inline(always)]
            fn set_seq(&mut self, seq: u64) {
                self.seq = seq;
            }
        }
    )*};
}

payloads!(Seq8 = 8, Seq64 = 64, Seq1K = 1024, Seq64K = 65536);
