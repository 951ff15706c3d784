//! Segment names: validated, and always carrying the `shmlane.` prefix on disk.
//!
//! A user name such as `orders` becomes the file `shmlane.orders`, so our files are
//! recognisable in `/dev/shm` and discovery never touches anything else.

use std::fmt;

/// Prefix of every file shmlane creates.
pub const NAME_PREFIX: &str = "shmlane.";

/// Longest user part of a name; with the prefix it stays well under `NAME_MAX` (255).
const MAX_LEN: usize = 200;

/// A validated segment name (the part after [`NAME_PREFIX`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SegmentName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("segment name is empty: give a name such as `orders`")]
    Empty,
    /// The name is longer than the limit.
    #[error("segment name is {len} bytes long; use at most {max} bytes")]
    TooLong {
        /// Length of the refused name.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a character other than ASCII letters, digits, `-`, `_` and `.`.
    #[error(
        "segment name contains {found:?}; use only ASCII letters, digits, '-', '_' and '.' (no '/')"
    )]
    BadCharacter {
        /// The first refused character.
        found: char,
    },
    /// The name starts with `.` or contains `..`, which could escape or hide a path.
    #[error("segment name {0:?} starts with '.' or contains '..'; choose a plain name")]
    Dots(String),
    /// A file name handed to [`SegmentName::from_file_name`] lacks the prefix.
    #[error("{0:?} is not a shmlane file: its name does not start with `shmlane.`")]
    NotOurs(String),
}

impl SegmentName {
    /// Validates a user name such as `orders` or `feed.l2-eu`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_LEN {
            return Err(NameError::TooLong { len: name.len(), max: MAX_LEN });
        }
        if let Some(found) =
            name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(NameError::BadCharacter { found });
        }
        if name.starts_with('.') || name.contains("..") {
            return Err(NameError::Dots(name.to_owned()));
        }
        Ok(SegmentName(name.to_owned()))
    }

    /// Parses a file name as found on disk (`shmlane.orders`).
    pub fn from_file_name(file_name: &str) -> Result<Self, NameError> {
        match file_name.strip_prefix(NAME_PREFIX) {
            Some(name) => Self::new(name),
            None => Err(NameError::NotOurs(file_name.to_owned())),
        }
    }

    /// The user part (`orders`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file name on disk (`shmlane.orders`).
    pub fn file_name(&self) -> String {
        format!("{NAME_PREFIX}{}", self.0)
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_prefixes_them() {
        let name = SegmentName::new("feed.l2-eu_1").unwrap();
        assert_eq!(name.file_name(), "shmlane.feed.l2-eu_1");
        assert_eq!(SegmentName::from_file_name("shmlane.feed.l2-eu_1").unwrap(), name);
    }

    #[test]
    fn refuses_traversal_and_odd_characters() {
        assert_eq!(SegmentName::new(""), Err(NameError::Empty));
        assert_eq!(SegmentName::new("a/b"), Err(NameError::BadCharacter { found: '/' }));
        assert_eq!(SegmentName::new("a b"), Err(NameError::BadCharacter { found: ' ' }));
        assert_eq!(SegmentName::new("a\0"), Err(NameError::BadCharacter { found: '\0' }));
        assert_eq!(SegmentName::new("é"), Err(NameError::BadCharacter { found: 'é' }));
        assert!(matches!(SegmentName::new(".."), Err(NameError::Dots(_))));
        assert!(matches!(SegmentName::new("a..b"), Err(NameError::Dots(_))));
        assert!(matches!(SegmentName::new(".hidden"), Err(NameError::Dots(_))));
        assert!(matches!(SegmentName::new(&"x".repeat(201)), Err(NameError::TooLong { .. })));
        assert!(SegmentName::new(&"x".repeat(200)).is_ok());
        assert!(matches!(SegmentName::from_file_name("other.x"), Err(NameError::NotOurs(_))));
    }
}
