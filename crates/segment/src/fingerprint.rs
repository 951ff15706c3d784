//! Layout fingerprints: a stable 64-bit hash of what a segment stores.
//!
//! The creator stores a fingerprint in the header and openers compare it with the one they
//! compute, so a process built with a different layout (another element type, capacity or
//! format version) gets an error instead of garbage. The hash is FNV-1a over a canonical byte
//! encoding: stable across processes, compilers and Rust releases, and usable in `const`.

/// A 64-bit layout fingerprint built from labels and numbers.
///
/// ```
/// use shmlane_segment::Fingerprint;
/// const ORDERS: Fingerprint = Fingerprint::new("orders-pool").with_u64(64).with_u64(1024);
/// assert_ne!(ORDERS, Fingerprint::new("orders-pool").with_u64(128).with_u64(1024));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Fingerprint {
    /// Starts a fingerprint from a label naming what is stored.
    pub const fn new(label: &str) -> Self {
        Fingerprint(FNV_OFFSET).with_bytes(label.as_bytes())
    }

    /// Mixes in raw bytes, prefixed by their length so that concatenations stay distinct.
    pub const fn with_bytes(self, bytes: &[u8]) -> Self {
        let mut hash = mix(self.0, &(bytes.len() as u64).to_le_bytes());
        hash = mix(hash, bytes);
        Fingerprint(hash)
    }

    /// Mixes in a number (a size, an alignment, a capacity, a version).
    pub const fn with_u64(self, value: u64) -> Self {
        Fingerprint(mix(self.0, &value.to_le_bytes()))
    }

    /// Wraps a value read from a header or computed elsewhere.
    pub const fn from_raw(value: u64) -> Self {
        Fingerprint(value)
    }

    /// The 64-bit value stored in a header.
    pub const fn get(self) -> u64 {
        self.0
    }
}

const fn mix(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_fnv1a_vector() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; ours prefixes the length (1 as u64 LE).
        assert_eq!(mix(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn length_prefix_keeps_concatenations_apart() {
        let ab_c = Fingerprint::new("ab").with_bytes(b"c");
        let a_bc = Fingerprint::new("a").with_bytes(b"bc");
        assert_ne!(ab_c, a_bc);
    }
}
