//! The busy-polling hot path (loan, write, send, receive, read, drop) allocates nothing once
//! a subscriber is connected and the payload segment mapped: counted by a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use shmlane::Node;

/// Counts allocations made by this test binary.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a counter read after the work, on the same thread.
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn loan_send_receive_and_drop_allocate_nothing() {
    let node = Node::builder("hot").namespace(format!("h{}", std::process::id())).create().unwrap();
    let topic = node.topic::<[u64; 4]>("hot").history(2).create().unwrap();
    let subscriber = topic.subscriber().unwrap();
    let publisher = topic.publisher().unwrap();
    let round = |i: u64| {
        let mut loan = publisher.loan().unwrap();
        *loan = [i; 4];
        publisher.send(loan).unwrap();
        let sample = subscriber.receive().unwrap().expect("sent just before");
        assert_eq!(*sample, [i; 4]);
    };
    round(0); // connects the subscriber and maps the payload segment
    // The counter counts (so a zero below means something).
    let probe = ALLOCATIONS.load(Ordering::Relaxed);
    drop(std::hint::black_box(Box::new(1u64)));
    assert!(ALLOCATIONS.load(Ordering::Relaxed) > probe);
    // Relaxed: same thread.
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 1..10_000 {
        round(i);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations on the hot path");
}
