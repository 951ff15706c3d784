//! Limits on what a segment may claim and be called, end to end through the builder (the
//! header fields one by one are in `crates/segment/tests/hostile_input.rs`, the name rules in
//! `name.rs`'s unit tests):
//!
//! - a hostile name is refused by every way in (create, open, read-only open,
//!   `open_or_create`, each backing) with the precise `NameError`, and nothing is created
//!   anywhere;
//! - sizes: the builder's default cap (64 GiB) refuses a file and header claiming a terabyte
//!   before anything is mapped, and bounds what `create` accepts;
//! - a segment larger than the free space of `/dev/shm` is `CreateError::NoSpace` at creation,
//!   with no file left, not a `SIGBUS` when its pages are first touched.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use shmlane_segment::{
    Backing, CreateError, HEADER_SIZE, NameError, OpenError, Segment, SegmentBuilder, SegmentName,
    SegmentStatus,
};
use shmlane_testkit::{Cleanup, SHM_DIR, segment_path};

const GIB: u64 = 1 << 30;
/// The builder's default `max_size`.
const DEFAULT_MAX: u64 = 64 * GIB;
const TIB: u64 = 1 << 40;
/// Offset of `total_size` in the header.
const TOTAL_SIZE_AT: u64 = 24;

/// The names of the entries of `dir`.
fn entries(dir: &Path) -> BTreeSet<String> {
    let listing = std::fs::read_dir(dir).expect("list the directory");
    listing.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect()
}

/// Every hostile name with the error it must give.
fn hostile_names() -> Vec<(String, NameError)> {
    let bad = |found| NameError::BadCharacter { found };
    let dots = |name: &str| NameError::Dots(name.to_owned());
    vec![
        (String::new(), NameError::Empty),
        ("../x".into(), bad('/')),
        ("a/b".into(), bad('/')),
        ("/etc/passwd".into(), bad('/')),
        ("..".into(), dots("..")),
        ("a..b".into(), dots("a..b")),
        (".hidden".into(), dots(".hidden")),
        ("x\0y".into(), bad('\0')),
        ("line\nbreak".into(), bad('\n')),
        ("tab\t".into(), bad('\t')),
        ("with space".into(), bad(' ')),
        ("star*".into(), bad('*')),
        ("$(reboot)".into(), bad('$')),
        ("~user".into(), bad('~')),
        ("back\\slash".into(), bad('\\')),
        ("é".into(), bad('é')),
        ("\u{202e}rtl".into(), bad('\u{202e}')),
        ("x".repeat(201), NameError::TooLong { len: 201, max: 200 }),
        ("y".repeat(4096), NameError::TooLong { len: 4096, max: 200 }),
    ]
}

/// Whether a refusal's message tells the user what to do instead.
fn says_what_to_do(error: &NameError) -> bool {
    let message = error.to_string();
    ["give a name", "use at most", "use only", "choose a plain name"]
        .iter()
        .any(|advice| message.contains(advice))
}

#[test]
fn hostile_names_are_refused_by_every_entry_point_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("segments");
    std::fs::create_dir(&inner).unwrap();
    let private = [dir.path().to_owned(), inner.clone()];
    let before: Vec<_> = private.iter().map(|d| entries(d)).collect();

    for (name, expected) in hostile_names() {
        assert!(says_what_to_do(&expected), "{expected}");
        for backing in [Backing::PosixShm, Backing::Dir(inner.clone()), Backing::Memfd] {
            let builder = || Segment::builder(&name).backing(backing.clone()).size(4096);
            let what = format!("{name:?} with {backing:?}");
            for (entry, result) in
                [("create", builder().create()), ("open_or_create", builder().open_or_create())]
            {
                match result {
                    Err(CreateError::InvalidName(error)) => {
                        assert_eq!(error, expected, "{entry} {what}")
                    }
                    other => panic!("{entry} {what} gave {other:?}"),
                }
            }
            if backing == Backing::Memfd {
                continue; // Memfds are never opened by name.
            }
            for (entry, result) in
                [("open", builder().open()), ("open_read_only", builder().open_read_only())]
            {
                match result {
                    Err(OpenError::InvalidName(error)) => {
                        assert_eq!(error, expected, "{entry} {what}")
                    }
                    other => panic!("{entry} {what} gave {other:?}"),
                }
            }
        }
        // Nothing under the name in /dev/shm, nor where a traversal would have led.
        if !name.contains('\0') {
            assert!(!Path::new(SHM_DIR).join(format!("shmlane.{name}")).exists(), "{name:?}");
        }
    }
    assert!(!Path::new(SHM_DIR).join("x").exists() && !dir.path().join("x").exists());
    let after: Vec<_> = private.iter().map(|d| entries(d)).collect();
    assert_eq!(before, after, "hostile names created files in the backing directory");
}

/// A file `shmlane.{name}` in `dir` holding a real header that claims `claimed` bytes, sized
/// `file_size` (sparse: no memory is used).
fn plant_claim(dir: &Path, name: &str, claimed: u64, file_size: u64) {
    let probe = Segment::builder(format!("{name}.probe"))
        .backing(Backing::Dir(dir.to_owned()))
        .size(4096)
        .create()
        .expect("a probe segment for a real header");
    let mut header = vec![0u8; HEADER_SIZE as usize];
    probe.read_bytes(0, &mut header).expect("its header");
    drop(probe);
    header[TOTAL_SIZE_AT as usize..][..8].copy_from_slice(&claimed.to_le_bytes());
    let path = dir.join(SegmentName::new(name).unwrap().file_name());
    let file = OpenOptions::new().create_new(true).write(true).open(path).unwrap();
    file.set_len(file_size).expect("a sparse file");
    file.write_all_at(&header, 0).expect("write the header");
}

#[test]
fn a_terabyte_file_with_a_header_that_agrees_is_refused_by_default_before_it_is_mapped() {
    let dir = tempfile::tempdir_in(SHM_DIR).unwrap();
    let opener = |name: &str| Segment::builder(name).backing(Backing::Dir(dir.path().to_owned()));
    // Consistent claims: only the cap stands between the reader and a terabyte mapping.
    for (name, size) in [("tib", TIB), ("just-over", DEFAULT_MAX + 4096)] {
        plant_claim(dir.path(), name, size, size);
        for result in [opener(name).open(), opener(name).open_read_only()] {
            match result {
                Err(OpenError::TooLarge { size: s, max }) => {
                    assert_eq!((s, max), (size, DEFAULT_MAX));
                }
                other => panic!("a {size}-byte segment gave {other:?}"),
            }
        }
    }
    // Discovery reads the header with pread: it lists the terabyte file without mapping it.
    let listed = shmlane_segment::list_in(dir.path()).unwrap();
    let tib = listed.iter().find(|i| i.name.as_str() == "tib").expect("listed");
    assert_eq!((tib.size, &tib.status), (TIB, &SegmentStatus::Alive));
    // A header claiming a terabyte over a small file is refused as well.
    plant_claim(dir.path(), "small", TIB, 4096);
    assert!(matches!(opener("small").open(), Err(OpenError::TooLarge { size: TIB, .. })));
}

#[test]
fn create_takes_only_sizes_between_a_header_and_the_cap() {
    let name = shmlane_testkit::unique_name("rel-limits", "size");
    let _cleanup = Cleanup::segment(&name);
    let invalid = |builder: SegmentBuilder, size: u64, max: u64| match builder.create() {
        Err(CreateError::InvalidSize { size: s, min, max: m }) => {
            assert_eq!((s, min, m), (size, HEADER_SIZE, max));
        }
        other => panic!("size {size} (max {max}) gave {other:?}"),
    };
    invalid(Segment::builder(&name), 0, DEFAULT_MAX);
    invalid(Segment::builder(&name).size(HEADER_SIZE - 1), HEADER_SIZE - 1, DEFAULT_MAX);
    invalid(Segment::builder(&name).size(DEFAULT_MAX + 1), DEFAULT_MAX + 1, DEFAULT_MAX);
    invalid(Segment::builder(&name).size(u64::MAX), u64::MAX, DEFAULT_MAX);
    invalid(Segment::builder(&name).size(8192).max_size(4096), 8192, 4096);
    assert!(!segment_path(&name).exists());
    let smallest = Segment::builder(&name).size(HEADER_SIZE).create().expect("a bare header");
    assert_eq!(smallest.len(), HEADER_SIZE);
}

#[test]
fn a_segment_larger_than_the_free_space_of_dev_shm_is_no_space_at_creation() {
    let vfs = rustix::fs::statvfs(SHM_DIR).unwrap();
    if vfs.f_blocks == 0 {
        eprintln!("skipped: /dev/shm has no size limit, so no free space to exceed");
        return;
    }
    let free = vfs.f_bfree * vfs.f_frsize;
    let size = free + GIB;
    let name = shmlane_testkit::unique_name("rel-limits", "nospace");
    let path = segment_path(&name);
    let _cleanup = Cleanup(path.clone());
    let started = Instant::now();
    match Segment::builder(&name).size(size).max_size(u64::MAX).create() {
        Err(CreateError::NoSpace { size: s, path: p }) => {
            assert_eq!((s, &p), (size, &path));
            let message = CreateError::NoSpace { size: s, path: p }.to_string();
            assert!(message.contains("--shm-size"), "the message says what to do: {message}");
        }
        other => panic!("a segment of free space + 1 GiB ({size} bytes) gave {other:?}"),
    }
    assert!(!path.exists(), "the failed create left {path:?} behind");
    eprintln!("refused {size} bytes ({free} free) in {:?}", started.elapsed());
}
