//! The notifier's cost when nobody sleeps: `notify_one`/`notify_all` after a state change,
//! next to baselines measured in the same run: the state change alone, the state change plus
//! a SeqCst fence (what the notify adds in theory), and the state change plus an unconditional
//! shared `FUTEX_WAKE` (what a notify without a waiter count would cost). Also a waiter's
//! `prepare_wait` + cancel. Everything lives in a POSIX shm segment, as processes share it,
//! on one pinned core.
//!
//! `cargo bench -p shmlane-benches --bench notify`

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use criterion::{Criterion, criterion_group, criterion_main};
use crossbeam_utils::CachePadded;
use rustix::thread::futex;
use shmlane_benches::{pin, two_cpus};
use shmlane_notify::EventCount;
use shmlane_segment::{Carver, Offset, RegionLayout, Segment, SharedView};

/// What the notifier touches: the condition, the event count, and a bare futex word.
#[repr(C)]
struct Words {
    state: CachePadded<AtomicU64>,
    event: CachePadded<EventCount>,
    futex: CachePadded<AtomicU32>,
}

// SAFETY: a `#[repr(C)]` aggregate of shared-view fields (atomics, an event count, padding).
unsafe impl SharedView for Words {}

fn notify(c: &mut Criterion) {
    pin(two_cpus().0);
    let mut carver = Carver::new();
    let region =
        carver.place(RegionLayout { size: size_of::<Words>() as u64, align: 128 }).expect("layout");
    let segment = Segment::builder(format!("bench.notify.{}", std::process::id()))
        .size(carver.total_size())
        .populate(true)
        .create()
        .expect("create the bench segment");
    let at: Offset<Words> = region.offset_of(0).expect("offset");
    let words = segment.get(at).expect("words");
    let mut seq = 0u64;
    let mut change = || {
        seq += 1;
        // Release: the publish a notifier follows (nobody reads it here).
        words.state.store(black_box(seq), Ordering::Release);
    };

    let mut group = c.benchmark_group("notify_no_waiter");
    group.bench_function("state change alone", |b| b.iter(&mut change));
    group.bench_function("state change + fence(SeqCst)", |b| {
        b.iter(|| {
            change();
            fence(Ordering::SeqCst);
        })
    });
    group.bench_function("state change + notify_one", |b| {
        b.iter(|| {
            change();
            words.event.notify_one();
        })
    });
    group.bench_function("state change + notify_all", |b| {
        b.iter(|| {
            change();
            words.event.notify_all();
        })
    });
    group.bench_function("state change + raw FUTEX_WAKE", |b| {
        b.iter(|| {
            change();
            black_box(futex::wake(&words.futex, futex::Flags::empty(), 1).expect("futex wake"));
        })
    });
    group.finish();

    c.bench_function("prepare_wait + cancel", |b| b.iter(|| drop(words.event.prepare_wait())));
}

criterion_group!(benches, notify);
criterion_main!(benches);
