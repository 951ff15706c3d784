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
        fingerprint(self.name, self.size, self.align, self.version)
    }
}

/// A payload type described at run time, for processes that have no Rust type for it: the C
/// ABI, Python, and tools that carry any topic (a recorder, a bridge). Two sides agree when
/// all four fields are equal, as for [`TypeInfo`], whose fingerprint it shares: a C struct
/// named `"my_app::Tick"` with the Rust `Tick`'s size, alignment and version joins the Rust
/// topic of `my_app::Tick`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeSpec {
    /// The type's name (for a Rust type, `std::any::type_name`).
    pub name: String,
    /// Bytes of one element, at least 1.
    pub size: u64,
    /// Its alignment: a power of two, at most [`TypeSpec::MAX_ALIGN`].
    pub align: u64,
    /// The user's layout version.
    pub version: u64,
}

impl TypeSpec {
    /// The largest alignment a payload element may ask for (a page).
    pub const MAX_ALIGN: u64 = 4096;
    /// The largest element (4 GiB - 1): a loan of `n` elements is `n × size` bytes.
    pub const MAX_SIZE: u64 = u32::MAX as u64;

    /// A type named `name` of `size` bytes aligned to `align`, at layout `version`.
    pub fn new(name: impl Into<String>, size: u64, align: u64, version: u64) -> Self {
        TypeSpec { name: name.into(), size, align, version }
    }

    /// The description of the Rust type `T` at `version` (what a typed topic records).
    pub fn of<T>(version: u64) -> Self {
        TypeInfo::of::<T>(version).into()
    }

    /// A hash of all four fields (equal to [`TypeInfo::fingerprint`] of the same type).
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.name, self.size, self.align, self.version)
    }

    /// Whether elements of this layout can be carried: a size of 1 to [`MAX_SIZE`](Self::MAX_SIZE)
    /// bytes, an alignment that is a power of two up to [`MAX_ALIGN`](Self::MAX_ALIGN), and a
    /// size that is a multiple of the alignment (as every C and Rust type's is).
    pub fn check(&self) -> Result<(), crate::ConfigError> {
        let bad = || crate::ConfigError::TypeLayout { size: self.size, align: self.align };
        let align_ok = self.align.is_power_of_two() && self.align <= Self::MAX_ALIGN;
        let size_ok = (1..=Self::MAX_SIZE).contains(&self.size);
        if !align_ok || !size_ok || !self.size.is_multiple_of(self.align) {
            return Err(bad());
        }
        Ok(())
    }
}

impl From<TypeInfo> for TypeSpec {
    fn from(info: TypeInfo) -> Self {
        TypeSpec {
            name: info.name.to_owned(),
            size: info.size,
            align: info.align,
            version: info.version,
        }
    }
}

impl std::fmt::Display for TypeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let TypeSpec { name, size, align, version } = self;
        write!(f, "{name} ({size} bytes, align {align}, version {version})")
    }
}

/// The fingerprint of a type's four fields.
fn fingerprint(name: &str, size: u64, align: u64, version: u64) -> u64 {
    Fingerprint::new(name).with_u64(size).with_u64(align).with_u64(version).get()
}
