//! Segments of a test: where their files live, the guards that remove them, and the role
//! owners a test writes into shared words to play a live or a dead peer.

use std::path::PathBuf;

use shmlane_segment::{Liveness, RoleOwner, SegmentName};

use crate::{Cleanup, shm_file, unique_name};

/// Where POSIX shared memory keeps the segment `name` (its file in [`SHM_DIR`](crate::SHM_DIR)).
pub fn segment_path(name: &str) -> PathBuf {
    shm_file(SegmentName::new(name).expect("a valid segment name").file_name())
}

/// A fresh segment name ([`unique_name`]`(kind, tag)`) and the guard that removes its file.
pub fn unique_segment(kind: &str, tag: &str) -> (String, Cleanup) {
    let name = unique_name(kind, tag);
    let cleanup = Cleanup::segment(&name);
    (name, cleanup)
}

impl Cleanup {
    /// Removes the file of the segment `name` when dropped.
    pub fn segment(name: &str) -> Cleanup {
        Cleanup(segment_path(name))
    }
}

/// The owner word of this process, as a role claim stores it.
pub fn me() -> RoleOwner {
    RoleOwner::current().expect("this process's identity")
}

/// The owner word of a process proven dead: a presence token without a presence file (what a
/// dead owner's token becomes once its file is removed after the proof).
pub fn dead_owner() -> RoleOwner {
    let owner = RoleOwner::from_raw(0xdead_0000_0000_0000 | u64::from(std::process::id()))
        .expect("a non-zero word");
    assert_eq!(owner.liveness(), Liveness::Dead, "a token without a presence file");
    owner
}
