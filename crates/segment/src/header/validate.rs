//! Validation of a copied header: nothing in it is believed before these checks pass.
//!
//! [`validate_identity`] checks what any published header (`Initializing` or `Ready`) must
//! hold: our magic, format and header size, and a creator. [`validate_ready`] checks a `Ready`
//! header against the file it came from and what the opener expects. Each failure is an
//! [`OpenError`], never a panic.

use super::{FORMAT_VERSION, HEADER_SIZE, MAGIC, RawHeader};
use crate::OpenError;

/// What an opener expects of a `Ready` header besides its identity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expected {
    /// Size of the file the header was read from.
    pub(crate) file_size: u64,
    /// Largest segment the opener accepts.
    pub(crate) max_size: u64,
    /// Backing code for how the segment was opened.
    pub(crate) backing: u32,
    /// The opener's layout fingerprint.
    pub(crate) fingerprint: u64,
}

/// Checks the fields that say "this is a shmlane segment of our format, written by a process".
pub(crate) fn validate_identity(header: &RawHeader) -> Result<(), OpenError> {
    if header.magic != MAGIC {
        return Err(OpenError::BadMagic { found: header.magic });
    }
    if header.format_version != FORMAT_VERSION {
        return Err(OpenError::UnsupportedVersion { found: header.format_version });
    }
    if u64::from(header.header_size) != HEADER_SIZE {
        return Err(OpenError::BadHeaderSize { found: header.header_size });
    }
    if header.creator_pid == 0 || header.creator_pid > i32::MAX as u32 {
        return Err(OpenError::BadCreator { found: header.creator_pid });
    }
    if header.creator_token == 0 {
        return Err(OpenError::NoCreatorToken);
    }
    Ok(())
}

/// Checks the fields of a `Ready` header against the file and the opener's expectations.
pub(crate) fn validate_ready(header: &RawHeader, expected: &Expected) -> Result<(), OpenError> {
    if header.total_size > expected.max_size {
        return Err(OpenError::TooLarge { size: header.total_size, max: expected.max_size });
    }
    if header.total_size != expected.file_size {
        return Err(OpenError::SizeMismatch {
            header: header.total_size,
            file: expected.file_size,
        });
    }
    if header.backing != expected.backing {
        return Err(OpenError::BadBacking { expected: expected.backing, found: header.backing });
    }
    if header.reserved0 != 0 || header.reserved != [0; 14] {
        return Err(OpenError::BadReserved);
    }
    if header.layout_fingerprint != expected.fingerprint {
        return Err(OpenError::FingerprintMismatch {
            expected: expected.fingerprint,
            found: header.layout_fingerprint,
        });
    }
    Ok(())
}
