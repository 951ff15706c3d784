//! loom models of the block pool's lock-free free list (`shmlane_segment::BlockPool`, run as
//! `shmlane_segment::model::BlockPool`: the same source over loom's atomics).
//!
//! Run: `cargo test --features loom --test loom_block_pool` (see `model.rs` for the bound).

use loom::sync::Arc;
use loom::thread;
use shmlane_segment::{AllocError, FreeError};
use shmlane_workspace::model;
use shmlane_workspace::pool::HeapPool;

/// After every model: all blocks are free again, and exactly `capacity` can be taken.
fn assert_nothing_lost(pool: &HeapPool, capacity: u32) {
    let view = pool.pool();
    assert_eq!(view.stats().allocated, 0, "a block was leaked");
    let taken: Vec<_> = (0..capacity).map(|i| pool.take(100 + i as usize).unwrap()).collect();
    assert_eq!(view.alloc(), Err(AllocError::Exhausted { capacity }));
    let mut sorted = taken.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), taken.len(), "a block was on the free list twice");
}

/// Runs `owners` threads on a pool of `capacity` blocks; each takes and gives back a block
/// `rounds` times (or finds the pool exhausted). Then checks that nothing was lost.
fn owners_take_and_give_back(owners: usize, capacity: u32, rounds: usize) {
    model::check(move || {
        let pool = Arc::new(HeapPool::new(capacity as usize));
        let handles: Vec<_> = (1..=owners)
            .map(|owner| {
                let pool = pool.clone();
                thread::spawn(move || {
                    for _ in 0..rounds {
                        match pool.take(owner) {
                            Ok(block) => pool.give_back(block),
                            Err(e) => assert_eq!(e, AllocError::Exhausted { capacity }),
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_nothing_lost(&pool, capacity);
    });
}

#[test]
fn two_threads_share_one_block_without_overlap() {
    owners_take_and_give_back(2, 1, 2);
}

#[test]
fn three_threads_on_two_blocks_each_block_one_owner() {
    owners_take_and_give_back(3, 2, 1);
}

/// The ABA shape: one thread pops while the other pops two blocks and pushes them back in
/// another order, so the head returns to the same index with a different link.
#[test]
fn pop_racing_pop_pop_push_push_is_aba_safe() {
    model::check(|| {
        let pool = Arc::new(HeapPool::new(3));
        let single = {
            let pool = pool.clone();
            thread::spawn(move || {
                let block = pool.take(1).unwrap();
                pool.give_back(block);
            })
        };
        let a = pool.take(2).unwrap();
        let b = pool.take(2).unwrap();
        pool.give_back(a);
        pool.give_back(b);
        single.join().unwrap();
        assert_nothing_lost(&pool, 3);
    });
}

#[test]
fn concurrent_double_free_is_detected_exactly_once() {
    model::check(|| {
        let pool = Arc::new(HeapPool::new(2));
        let block = pool.pool().alloc().unwrap();
        let other = {
            let pool = pool.clone();
            thread::spawn(move || pool.pool().free(block))
        };
        let mine = pool.pool().free(block);
        let theirs = other.join().unwrap();
        let results = [mine, theirs];
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
        assert!(results.contains(&Err(FreeError::DoubleFree(block.get()))));
        assert_nothing_lost(&pool, 2);
    });
}
