//! `Segment::prefetch`, `prefetch_write` and `demote` are hints: at any offset, in the segment
//! or past it, through a writable or a read-only mapping, they neither fault nor change a byte;
//! nor does `hint::demote` of any reference.

use shmlane_segment::{Backing, Fingerprint, HEADER_SIZE, Segment, SegmentBuilder};

const SIZE: u64 = 64 << 10;
const FINGERPRINT: Fingerprint = Fingerprint::new("test.prefetch");

fn builder(dir: &std::path::Path) -> SegmentBuilder {
    Segment::builder("prefetched").backing(Backing::Dir(dir.to_owned())).fingerprint(FINGERPRINT)
}

fn contents(segment: &Segment) -> Vec<u8> {
    let mut bytes = vec![0; (SIZE - HEADER_SIZE) as usize];
    segment.read_bytes(HEADER_SIZE, &mut bytes).unwrap();
    bytes
}

#[test]
fn prefetches_anywhere_fault_nowhere_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writable = builder(dir.path()).size(SIZE).create().expect("create");
    let pattern: Vec<u8> = (0..SIZE - HEADER_SIZE).map(|i| (i % 251) as u8).collect();
    writable.write_bytes(HEADER_SIZE, &pattern).unwrap();
    let read_only = builder(dir.path()).open_read_only().expect("open read-only");
    assert!(read_only.is_read_only());

    let offsets =
        [0, 1, HEADER_SIZE, HEADER_SIZE + 63, SIZE / 2, SIZE - 1, SIZE, SIZE + 64, u64::MAX];
    for segment in [&writable, &read_only] {
        for &offset in &offsets {
            segment.prefetch(offset);
            segment.prefetch_write(offset);
            segment.demote(offset);
        }
    }
    assert_eq!(contents(&writable), pattern);
    assert_eq!(contents(&read_only), pattern);
}

#[test]
fn demoting_a_reference_changes_nothing() {
    let words: Vec<u64> = (0..64).collect();
    for word in &words {
        shmlane_segment::hint::demote(word);
    }
    shmlane_segment::hint::demote(&words[..]);
    shmlane_segment::hint::demote(&[0u64; 0]);
    shmlane_segment::hint::demote(&());
    assert!(words.iter().copied().eq(0..64));
}
