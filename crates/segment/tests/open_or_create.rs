//! `open_or_create` under a race: exactly one caller creates and initialises, every other
//! caller opens the initialised segment.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use shmlane_segment::{BlockPool, Carver, Fingerprint, Segment};

#[test]
fn racing_callers_get_one_creator_and_one_initialisation() {
    const RACERS: usize = 8;
    let name = format!("test.open-or-create.{}", std::process::id());
    let fingerprint = Fingerprint::new("open-or-create-race");
    let mut carver = Carver::new();
    let region = carver.place(BlockPool::layout(64, 64, 8).unwrap()).unwrap();
    let inits = AtomicU32::new(0);
    let barrier = Barrier::new(RACERS);

    let segments: Vec<Segment> = thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    Segment::builder(&name)
                        .size(carver.total_size())
                        .fingerprint(fingerprint)
                        .open_or_create_with(|segment| {
                            inits.fetch_add(1, Ordering::Relaxed);
                            BlockPool::init_in(segment, region, 64, 64, 8)?;
                            Ok(())
                        })
                        .expect("every racer gets the segment")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    assert_eq!(inits.load(Ordering::Relaxed), 1);
    assert_eq!(segments.iter().filter(|s| s.is_creator()).count(), 1);
    // Every opener sees the creator's pool, initialised: one block taken through one handle is
    // visible as taken through every other.
    let first = BlockPool::attach(&segments[0], region).unwrap();
    let block = first.alloc().unwrap();
    for segment in &segments {
        let pool = BlockPool::attach(segment, region).unwrap();
        assert_eq!(pool.stats().allocated, 1);
    }
    first.free(block).unwrap();
    drop(segments);
    assert!(!std::path::Path::new(&format!("/dev/shm/shmlane.{name}")).exists());
}
