//! The zero-copy type contract: what may travel through shared memory, and how a service
//! records the type so that opening it with another type is an error, not garbage.

use shmlane_segment::Fingerprint;

/// What a topic, an rpc service or a queue carries: derive zerocopy's four traits on your own
/// `#[repr(C)]` struct to make it one.
///
/// shmlane re-exports zerocopy and its derives, so `shmlane` is the only dependency your
/// `Cargo.toml` needs. The attribute `#[zerocopy(crate = "shmlane::zerocopy")]` tells the
/// derives to find zerocopy there (without it they name `::zerocopy`, a dependency of your
/// own):
///
/// ```
/// use shmlane::{FromBytes, Immutable, IntoBytes, KnownLayout};
///
/// #[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
/// #[zerocopy(crate = "shmlane::zerocopy")]
/// #[repr(C)]
/// struct Tick {
///     instrument: u32,
///     size: u32,
///     price: f64,
///     sequence: u64,
///     timestamp_ns: u64,
/// }
///
/// fn shareable<T: shmlane::ZeroCopy>() {}
/// shareable::<Tick>();
/// ```
#[doc(inline)]
pub use shmlane_queue::ZeroCopy;

/// The identity of a payload type, stored with a service: name, size, alignment and a version
/// the user bumps when the layout changes without a change of name or size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// `std::any::type_name` (stable within one build of the programs sharing it).
    pub name: &'static str,
    /// `size_of`.
    pub size: u64,
    /// `align_of`.
    pub align: u64,
    /// The user's layout version.
    pub version: u64,
}

impl TypeInfo {
    /// The identity of `T` at `version`.
    pub fn of<T>(version: u64) -> Self {
        TypeInfo {
            name: std::any::type_name::<T>(),
            size: size_of::<T>() as u64,
            align: align_of::<T>() as u64,
            version,
        }
    }

    /// A hash of all four fields.
    pub fn fingerprint(&self) -> u64 {
        Fingerprint::new(self.name)
            .with_u64(self.size)
            .with_u64(self.align)
            .with_u64(self.version)
            .get()
    }
}
