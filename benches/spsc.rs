//! SPSC throughput: a producer thread and a consumer thread pinned to two different CPUs move
//! `u64`s through a 1024-slot queue, one at a time and in batches of 16. shmlane's queue on the
//! heap and inside a real POSIX shm segment, next to rtrb, all in the same run.
//!
//! `cargo bench -p shmlane-benches --bench spsc`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmlane_benches::{Rx, Tx, apart, transfer};
use shmlane_queue::spsc::{self, SharedSpsc};
use shmlane_segment::{Carver, Fingerprint, Segment};

const CAPACITY: usize = 1024;

fn bench_pair(c: &mut Criterion, name: &str, tx: &mut dyn Tx, rx: &mut dyn Rx) {
    for batched in [false, true] {
        let group_name = if batched { "spsc/batch16" } else { "spsc/single" };
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| transfer(&mut *tx, &mut *rx, iters.max(2), batched))
        });
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    let (mut tx, mut rx) = apart(spsc::new::<u64>(CAPACITY));
    bench_pair(c, "shmlane heap", &mut *tx, &mut *rx);

    let (mut tx, mut rx) = apart(rtrb::RingBuffer::<u64>::new(CAPACITY));
    bench_pair(c, "rtrb", &mut *tx, &mut *rx);

    let fingerprint = Fingerprint::new("bench.spsc.u64");
    let mut carver = Carver::new();
    let region = carver.place(SharedSpsc::<u64>::layout(CAPACITY as u64).unwrap()).unwrap();
    let segment = Segment::builder(format!("bench.spsc.{}", std::process::id()))
        .size(carver.total_size())
        .populate(true)
        .create_with(|s| {
            SharedSpsc::<u64>::init_in(s, region, CAPACITY as u64, fingerprint)?;
            Ok(())
        })
        .unwrap();
    let queue = SharedSpsc::<u64>::attach(&segment, region, fingerprint).unwrap();
    let (mut tx, mut rx) = apart((queue.producer().unwrap(), queue.consumer().unwrap()));
    bench_pair(c, "shmlane in shm", &mut *tx, &mut *rx);
}

criterion_group!(spsc_benches, benches);
criterion_main!(spsc_benches);
