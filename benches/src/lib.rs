//! Support for the benchmarks in this folder (`cargo bench -p shmlane-benches`).
#![deny(missing_docs)]

use std::sync::OnceLock;

use rustix::thread::CpuSet;

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
