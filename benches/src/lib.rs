//! Support for the benchmarks in this folder (`cargo bench -p shmlane-benches`).

#[cfg(feature = "iceoryx2")]
pub mod iox2;
pub mod peer;
pub mod pingpong;
pub mod rounds;
pub mod stream;

use std::hint::black_box;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use rustix::thread::CpuSet;
use shmlane_queue::spsc;

/// Values per batch in batched transfers.
pub const BATCH: usize = 16;

/// The first two CPUs of the process's affinity mask, read once, before any thread is pinned
/// (after a pin, the mask of the pinned thread, and of threads it spawns, holds one CPU).
/// Both ids are the same on a one-CPU machine.
pub fn two_cpus() -> (usize, usize) {
    static CPUS: OnceLock<(usize, usize)> = OnceLock::new();
    *CPUS.get_or_init(|| {
        let allowed = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
        let ids: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c)).take(2).collect();
        if ids.len() < 2 {
            eprintln!("warning: one CPU available: both bench threads share it");
        }
        (ids[0], *ids.get(1).unwrap_or(&ids[0]))
    })
}

/// Pins the calling thread to `cpu` by id.
pub fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// The producing end of any queue under test.
pub trait Tx: Send {
    /// Pushes one value; false if the queue was full.
    fn push_one(&mut self, value: u64) -> bool;
    /// Pushes a prefix of `values`; returns how many.
    fn push_many(&mut self, values: &[u64]) -> usize;
}

/// The consuming end of any queue under test.
pub trait Rx: Send {
    /// Pops one value, if any.
    fn pop_one(&mut self) -> Option<u64>;
    /// Pops into a prefix of `out`; returns how many.
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

/// A queue's two ends on cache lines of their own, as each would be in its own thread's
/// memory: side by side (two locals, or two fields of a closure) the private index each end
/// writes per operation would share a line with the other's, and the false sharing would be
/// measured instead of the queue.
pub fn apart<P, C>((tx, rx): (P, C)) -> (CachePadded<P>, CachePadded<C>) {
    (CachePadded::new(tx), CachePadded::new(rx))
}

/// Moves `count` values from `tx` to `rx` on two pinned threads (`BATCH` at a time if
/// `batched`), checking that none is lost; returns the producer-side time
/// from the first push until the consumer has the last value.
pub fn transfer(tx: &mut dyn Tx, rx: &mut dyn Rx, count: u64, batched: bool) -> Duration {
    let (producer_cpu, consumer_cpu) = two_cpus();
    thread::scope(|scope| {
        let consumer = scope.spawn(move || {
            pin(consumer_cpu);
            consume(rx, count, batched)
        });
        pin(producer_cpu);
        let start = Instant::now();
        produce(tx, count, batched);
        consumer.join().unwrap() - start
    })
}

/// Pushes the values `0..count` into `tx` (`BATCH` at a time if `batched`), retrying while
/// the queue is full.
#[inline(always)]
pub(crate) fn produce<P: Tx + ?Sized>(tx: &mut P, count: u64, batched: bool) {
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
}

/// Pops `count` values from `rx` (`BATCH` at a time if `batched`), checks that they sum to
/// `0 + 1 + … + (count - 1)` (none lost), and returns when it had the last.
#[inline(always)]
pub(crate) fn consume<C: Rx + ?Sized>(rx: &mut C, count: u64, batched: bool) -> Instant {
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
}

/// One end of an MPMC queue shared by reference: both traits on the same type.
macro_rules! mpmc_ends {
    ($queue:ty, $push:ident, $pop:ident) => {
        impl Tx for &$queue {
            fn push_one(&mut self, value: u64) -> bool {
                self.$push(value).is_ok()
            }
            fn push_many(&mut self, values: &[u64]) -> usize {
                values.iter().take_while(|v| self.$push(**v).is_ok()).count()
            }
        }
        impl Rx for &$queue {
            fn pop_one(&mut self) -> Option<u64> {
                self.$pop()
            }
            fn pop_many(&mut self, out: &mut [u64]) -> usize {
                out.iter_mut().map_while(|slot| self.$pop().map(|v| *slot = v)).count()
            }
        }
    };
}

mpmc_ends!(shmlane_queue::mpmc::Queue<u64>, try_push, try_pop);
mpmc_ends!(crossbeam_queue::ArrayQueue<u64>, push, pop);

impl Tx for shmlane_queue::mpmc::MpmcProducer<'_, u64> {
    fn push_one(&mut self, value: u64) -> bool {
        self.try_push(value).is_ok()
    }
    fn push_many(&mut self, values: &[u64]) -> usize {
        values.iter().take_while(|v| self.try_push(**v).is_ok()).count()
    }
}

impl Rx for shmlane_queue::mpmc::MpmcConsumer<'_, u64> {
    fn pop_one(&mut self) -> Option<u64> {
        self.try_pop().ok()
    }
    fn pop_many(&mut self, out: &mut [u64]) -> usize {
        out.iter_mut().map_while(|slot| self.try_pop().ok().map(|v| *slot = v)).count()
    }
}
