//! In-process throughput of the block pool's alloc+free, next to two baselines measured in
//! the same run: a `parking_lot::Mutex<Vec<u32>>` free list and crossbeam's `ArrayQueue` used
//! as a free list. Each is measured alone on one pinned core, and while a second thread pinned
//! to another core hammers the same structure (contended).
//!
//! `cargo bench -p shmlane-benches --bench block_pool`

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use parking_lot::Mutex;
use shmlane_benches::{pin, two_cpus};
use shmlane_segment::{BlockOffset, BlockPool, Carver, Region, Segment};

const BLOCKS: u32 = 1024;
const BLOCK_SIZE: u64 = 256;

/// What each contender offers: take a free block id, give it back.
trait FreeList: Sync {
    fn take(&self) -> Option<u64>;
    fn put(&self, block: u64);
}

/// A pool in a real POSIX shm segment, exactly as processes share it.
fn shm_segment() -> (Segment, Region) {
    let mut carver = Carver::new();
    let region = carver.place(BlockPool::layout(BLOCK_SIZE, 64, BLOCKS).unwrap()).unwrap();
    let segment = Segment::builder(format!("bench.pool.{}", std::process::id()))
        .size(carver.total_size())
        .populate(true)
        .create_with(|s| {
            BlockPool::init_in(s, region, BLOCK_SIZE, 64, BLOCKS)?;
            Ok(())
        })
        .unwrap();
    (segment, region)
}

impl FreeList for BlockPool<'_> {
    fn take(&self) -> Option<u64> {
        self.alloc().ok().map(BlockOffset::get)
    }
    fn put(&self, block: u64) {
        self.free(BlockOffset::from_raw(block)).unwrap();
    }
}

impl FreeList for Mutex<Vec<u64>> {
    fn take(&self) -> Option<u64> {
        self.lock().pop()
    }
    fn put(&self, block: u64) {
        self.lock().push(block);
    }
}

impl FreeList for ArrayQueue<u64> {
    fn take(&self) -> Option<u64> {
        self.pop()
    }
    fn put(&self, block: u64) {
        self.push(block).unwrap();
    }
}

fn filled_mutex() -> Mutex<Vec<u64>> {
    Mutex::new((0..u64::from(BLOCKS)).collect())
}

fn filled_queue() -> ArrayQueue<u64> {
    let queue = ArrayQueue::new(BLOCKS as usize);
    (0..u64::from(BLOCKS)).for_each(|i| queue.push(i).unwrap());
    queue
}

fn alloc_free(list: &dyn FreeList) {
    let block = list.take().expect("a block is free");
    list.put(black_box(block));
}

fn bench_one(c: &mut Criterion, group: &str, name: &str, list: &dyn FreeList, contended: bool) {
    let (main_cpu, other_cpu) = two_cpus();
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        if contended {
            scope.spawn(|| {
                pin(other_cpu);
                // Relaxed: a stop flag, nothing is published through it.
                while !stop.load(Ordering::Relaxed) {
                    alloc_free(list);
                }
            });
        }
        pin(main_cpu);
        c.benchmark_group(group).bench_function(name, |b| b.iter(|| alloc_free(list)));
        // Relaxed: see above.
        stop.store(true, Ordering::Relaxed);
    });
}

fn benches(c: &mut Criterion) {
    let (segment, region) = shm_segment();
    let pool = BlockPool::attach(&segment, region).unwrap();
    for contended in [false, true] {
        let group = if contended { "alloc_free/contended" } else { "alloc_free/alone" };
        bench_one(c, group, "shmlane BlockPool (in shm)", &pool, contended);
        bench_one(c, group, "parking_lot Mutex<Vec>", &filled_mutex(), contended);
        bench_one(c, group, "crossbeam ArrayQueue", &filled_queue(), contended);
    }
}

criterion_group!(block_pool, benches);
criterion_main!(block_pool);
