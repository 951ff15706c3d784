//! SPSC throughput: a producer thread and a consumer thread pinned to two different CPUs move
//! `u64`s through a 1024-slot queue, one at a time and in batches of 16. shmlane's queue on the
//! heap and inside a real POSIX shm segment, next to rtrb, all in the same run.
//!
//! `cargo bench -p shmlane-benches --bench spsc`

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmlane_benches::{pin, two_cpus};
use shmlane_queue::spsc::{self, SharedSpsc};
use shmlane_segment::{Carver, Fingerprint, Segment};

const CAPACITY: usize = 1024;
const BATCH: usize = 16;

/// The producing end of any queue under test.
trait Tx: Send {
    fn push_one(&mut self, value: u64) -> bool;
    fn push_many(&mut self, values: &[u64]) -> usize;
}

/// The consuming end of any queue under test.
trait Rx: Send {
    fn pop_one(&mut self) -> Option<u64>;
    fn pop_many(&mut self, out: &mut [u64]) -> usize;
}

macro_rules! shmlane_ends {
    ($producer:ty, $consumer:ty) => {
        impl Tx for $producer {
            fn push_one(&mut self, value: u64) -> bool {
                self.try_push(value).is_ok()
            }
            fn push_many(&mut self, values: &[u64]) -> usize {
                self.push_slice(values)
            }
        }
        impl Rx for $consumer {
            fn pop_one(&mut self) -> Option<u64> {
                self.try_pop().ok()
            }
            fn pop_many(&mut self, out: &mut [u64]) -> usize {
                self.pop_slice(out)
            }
        }
    };
}

shmlane_ends!(spsc::Producer<u64>, spsc::Consumer<u64>);
shmlane_ends!(
    spsc::Producer<u64, spsc::Shared<'_, u64>>,
    spsc::Consumer<u64, spsc::Shared<'_, u64>>
);

impl Tx for rtrb::Producer<u64> {
    fn push_one(&mut self, value: u64) -> bool {
        self.push(value).is_ok()
    }
    fn push_many(&mut self, values: &[u64]) -> usize {
        values.len() - self.push_partial_slice(values).1.len()
    }
}

impl Rx for rtrb::Consumer<u64> {
    fn pop_one(&mut self) -> Option<u64> {
        self.pop().ok()
    }
    fn pop_many(&mut self, out: &mut [u64]) -> usize {
        let len = out.len();
        len - self.pop_partial_slice(out).1.len()
    }
}

/// Moves `count` values from `tx` to `rx` on two pinned threads; returns the producer-side time
/// from the first push until the consumer has the last value.
fn transfer(tx: &mut dyn Tx, rx: &mut dyn Rx, count: u64, batched: bool) -> Duration {
    let (producer_cpu, consumer_cpu) = two_cpus();
    thread::scope(|scope| {
        let consumer = scope.spawn(move || {
            pin(consumer_cpu);
            let (mut received, mut sum) = (0u64, 0u64);
            let mut buffer = [0u64; BATCH];
            while received < count {
                if batched {
                    let got = rx.pop_many(&mut buffer);
                    sum = buffer[..got].iter().fold(sum, |s, v| s.wrapping_add(*v));
                    received += got as u64;
                } else if let Some(value) = rx.pop_one() {
                    sum = sum.wrapping_add(value);
                    received += 1;
                }
            }
            assert_eq!(sum, count * count.saturating_sub(1) / 2, "values lost or reordered");
            Instant::now()
        });
        pin(producer_cpu);
        let start = Instant::now();
        let mut next = 0u64;
        let mut batch = [0u64; BATCH];
        while next < count {
            if batched {
                let n = BATCH.min((count - next) as usize);
                batch.iter_mut().zip(next..).for_each(|(slot, v)| *slot = v);
                next += tx.push_many(&batch[..n]) as u64;
            } else if tx.push_one(black_box(next)) {
                next += 1;
            }
        }
        consumer.join().unwrap() - start
    })
}

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
    let (mut tx, mut rx) = spsc::new::<u64>(CAPACITY);
    bench_pair(c, "shmlane heap", &mut tx, &mut rx);

    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAPACITY);
    bench_pair(c, "rtrb", &mut tx, &mut rx);

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
    let (mut tx, mut rx) = (queue.producer().unwrap(), queue.consumer().unwrap());
    bench_pair(c, "shmlane in shm", &mut tx, &mut rx);
}

criterion_group!(spsc_benches, benches);
criterion_main!(spsc_benches);
