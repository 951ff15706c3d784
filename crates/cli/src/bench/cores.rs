//! Which two CPUs the bench runs on, and the machine it reports.
//!
//! The default is the first two CPUs of the affinity mask that are not SMT siblings of each
//! other (siblings share a core's caches and make every shared-memory transport look faster
//! than it is between cores). CPUs are pinned by id with `sched_setaffinity`, read once before
//! anything is pinned: after a pin, the mask (and a child's inherited mask) holds one CPU.

use rustix::thread::CpuSet;

/// The CPUs this process may run on, in id order.
pub fn allowed() -> Result<Vec<usize>, String> {
    let set = rustix::thread::sched_getaffinity(None)
        .map_err(|e| format!("cannot read the CPU affinity mask: {e}"))?;
    Ok((0..CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu)).collect())
}

/// The SMT siblings of `cpu` (itself included), from sysfs; just `cpu` if sysfs does not say.
fn siblings(cpu: usize) -> Vec<usize> {
    let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|list| parse_cpu_list(list.trim()))
        .unwrap_or(vec![cpu])
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((first, last)) => cpus.extend(first.parse::<usize>().ok()?..=last.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The two CPUs to run on, and warnings to print about them.
#[derive(Debug)]
pub struct Choice {
    /// The initiator's CPU.
    pub initiator: usize,
    /// The echo process's CPU.
    pub echo: usize,
    /// What makes the numbers less than a cross-core measurement.
    pub warnings: Vec<String>,
}

/// Checks `requested` against the affinity mask, or picks the default pair.
pub fn choose(requested: Option<(usize, usize)>) -> Result<Choice, String> {
    let allowed = allowed()?;
    let mut warnings = Vec::new();
    let (initiator, echo) = match requested {
        Some((initiator, echo)) => {
            for cpu in [initiator, echo] {
                if !allowed.contains(&cpu) {
                    return Err(format!(
                        "core {cpu} is not available: this process may run on CPUs {allowed:?}"
                    ));
                }
            }
            (initiator, echo)
        }
        None => {
            let first = *allowed.first().ok_or("the CPU affinity mask is empty")?;
            let apart = allowed.iter().copied().find(|&cpu| !siblings(first).contains(&cpu));
            let other = allowed.iter().copied().find(|&cpu| cpu != first);
            match (apart, other) {
                (Some(second), _) => (first, second),
                (None, Some(second)) => (first, second),
                (None, None) => (first, first),
            }
        }
    };
    if initiator == echo {
        warnings.push(format!(
            "both processes run on CPU {initiator}: the numbers measure context switches, not \
             cross-core latency"
        ));
    } else if siblings(initiator).contains(&echo) {
        warnings.push(format!(
            "CPUs {initiator} and {echo} are SMT siblings of one core: shared caches make \
             shared-memory transports look faster than between cores"
        ));
    }
    Ok(Choice { initiator, echo, warnings })
}

/// Parses `--cores A,B`.
pub fn parse_pair(arg: &str) -> Result<(usize, usize), String> {
    let (first, second) = arg.split_once(',').ok_or("expected two CPU ids, as in 0,1")?;
    let id =
        |text: &str| text.trim().parse::<usize>().map_err(|_| format!("`{text}` is not a CPU id"));
    Ok((id(first)?, id(second)?))
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) -> Result<(), String> {
    let mut set = CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)
        .map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
}

/// The CPU's model name, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                line.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, model)| model.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(vec![0, 1, 2, 3, 8, 10, 11]));
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn core_pairs_need_two_ids() {
        assert_eq!(parse_pair("0, 1"), Ok((0, 1)));
        assert!(parse_pair("0").is_err());
        assert!(parse_pair("0,a").is_err());
    }

    #[test]
    fn a_core_outside_the_mask_is_refused() {
        let error = choose(Some((0, CpuSet::MAX_CPU + 1))).unwrap_err();
        assert!(error.contains("is not available"), "{error}");
    }
}
