//! The busy-polling hot path (loan, write, send, receive, read, drop) allocates nothing once
//! a subscriber is connected and the payload segment mapped: counted by a global allocator, per
//! thread, so that other threads (libtest's, the node's heartbeat) allocating meanwhile do not
//! count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmlane::Node;

/// Counts each thread's allocations.
struct Counting;

thread_local! {
    /// Allocations made by this thread. A `const` initialiser and a type without a destructor:
    /// reaching it from the allocator neither allocates nor registers anything.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// How many allocations the calling thread has made.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `try_with`: an allocation while the thread's locals are torn down goes uncounted
        // instead of panicking inside the allocator.
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
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
    // The counter counts this thread's allocations (so a zero below means something).
    let probe = allocations();
    drop(std::hint::black_box(Box::new(1u64)));
    assert_eq!(allocations(), probe + 1);
    let before = allocations();
    for i in 1..10_000 {
        round(i);
    }
    assert_eq!(allocations() - before, 0, "allocations on the hot path");
}
