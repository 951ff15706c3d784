//! MPMC throughput with one producer and one consumer thread pinned to two CPUs (the machine
//! has two): shmlane's MPMC queue on the heap and inside a real POSIX shm segment (with its
//! claim announcements), next to crossbeam's `ArrayQueue`, 1024 slots, one value at a time and
//! in runs of 16, in the same run. Contention among several producers needs more
//! cores than this machine has; the exactly-once tests cover correctness there.
//!
//! `cargo bench -p shmlane-benches --bench mpmc`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use shmlane_benches::{apart, transfer};
use shmlane_queue::mpmc::{Queue, SharedMpmc};
use shmlane_segment::{Carver, Fingerprint, Segment};

const CAPACITY: usize = 1024;

fn benches(c: &mut Criterion) {
    let shmlane = Queue::<u64>::new(CAPACITY);
    let crossbeam = ArrayQueue::<u64>::new(CAPACITY);
    let fingerprint = Fingerprint::new("bench.mpmc.u64");
    let mut carver = Carver::new();
    let layout = SharedMpmc::<u64>::layout(CAPACITY as u64, 2, 2).unwrap();
    let region = carver.place(layout).unwrap();
    let segment = Segment::builder(format!("bench.mpmc.{}", std::process::id()))
        .size(carver.total_size())
        .populate(true)
        .create_with(|s| {
            SharedMpmc::<u64>::init_in(s, region, CAPACITY as u64, 2, 2, fingerprint)?;
            Ok(())
        })
        .unwrap();
    let queue = SharedMpmc::<u64>::attach(&segment, region, fingerprint).unwrap();
    let (mut tx, mut rx) = apart((queue.producer().unwrap(), queue.consumer().unwrap()));
    for batched in [false, true] {
        let mut group = c.benchmark_group(if batched { "mpmc/runs16" } else { "mpmc/single" });
        group.throughput(Throughput::Elements(1));
        group.bench_function("shmlane mpmc", |b| {
            b.iter_custom(|iters| transfer(&mut &shmlane, &mut &shmlane, iters.max(2), batched))
        });
        group.bench_function("shmlane mpmc in shm", |b| {
            b.iter_custom(|iters| transfer(&mut *tx, &mut *rx, iters.max(2), batched))
        });
        group.bench_function("crossbeam ArrayQueue", |b| {
            b.iter_custom(|iters| transfer(&mut &crossbeam, &mut &crossbeam, iters.max(2), batched))
        });
        group.finish();
    }
}

criterion_group!(mpmc_benches, benches);
criterion_main!(mpmc_benches);
