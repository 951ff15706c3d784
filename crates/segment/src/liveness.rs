//! Process identity that survives pid reuse: a pid plus the process start time.
//!
//! The start time is field 22 of `/proc/PID/stat` (clock ticks since boot), parsed after the
//! last `)` because the command name in field 2 may itself contain `)` or spaces. A pid whose
//! start time differs from the recorded one belongs to another process: the recorded one is
//! dead. Pids mean nothing across pid namespaces and `/proc` may hide live processes, so a
//! missing `/proc/PID` or a zombie state proves nothing here: the proof of death that every
//! role and segment relies on is the presence lock ([`crate::presence`]); this module keeps the
//! identity and its pid-reuse check.

use std::{fmt, fs, io};

/// A process, identified across pid reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
}

/// What is known about a recorded process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The process runs (or is stopped): its pid exists with the recorded start time.
    Alive,
    /// Proven dead: its presence lock is free or gone, or its pid now belongs to a newer
    /// process.
    Dead,
    /// Cannot tell (for example `/proc` is hidden); treat as alive.
    Unknown,
}

impl ProcessId {
    /// The calling process.
    pub fn current() -> io::Result<ProcessId> {
        let pid = std::process::id();
        match read_stat(pid)? {
            Some(stat) => Ok(ProcessId { pid, start_time: stat.start_time }),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "/proc/self/stat is missing")),
        }
    }

    /// What `/proc` of *our* pid namespace says about this pid: [`Liveness::Dead`] only when
    /// the pid is visible with another start time (reused: the recorded process ended),
    /// [`Liveness::Alive`] when it is visible with the recorded one, [`Liveness::Unknown`]
    /// otherwise (not visible: another namespace, `hidepid`, or ended; we cannot tell which).
    /// Meaningful only for a process recorded in our own pid namespace and boot.
    pub fn liveness(&self) -> Liveness {
        if reused(self.pid, self.start_time) {
            return Liveness::Dead;
        }
        match read_stat(self.pid) {
            Ok(Some(stat)) if stat.start_time == self.start_time => Liveness::Alive,
            _ => Liveness::Unknown,
        }
    }
}

/// Whether `pid` is visible in our `/proc` with a start time other than `start_time`: the
/// process recorded with that start time has ended and its pid was given to another.
pub(crate) fn reused(pid: u32, start_time: u64) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    matches!(read_stat(pid), Ok(Some(stat)) if stat.start_time != start_time)
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (started at tick {})", self.pid, self.start_time)
    }
}

struct Stat {
    start_time: u64,
    #[cfg_attr(not(test), allow(dead_code))]
    exited: bool,
}

/// Reads `/proc/PID/stat`; `Ok(None)` when the pid does not exist.
fn read_stat(pid: u32) -> io::Result<Option<Stat>> {
    // Bytes, not a String: the command name in field 2 may be any bytes, not UTF-8.
    let text = match fs::read(format!("/proc/{pid}/stat")) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // ESRCH: the process went away between open and read.
        Err(e) if e.raw_os_error() == Some(3) => return Ok(None),
        Err(e) => return Err(e),
    };
    parse_stat(&text)
        .map(Some)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc/PID/stat"))
}

fn parse_stat(text: &[u8]) -> Option<Stat> {
    // Fields after the command name start at field 3 (state); field 22 is 19 further. They are
    // ASCII, whatever bytes the command name holds.
    let close = text.iter().rposition(|&b| b == b')')?;
    let after_comm = std::str::from_utf8(&text[close + 1..]).ok()?;
    let mut fields = after_comm.split_ascii_whitespace();
    let state = fields.next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(Stat { start_time, exited: matches!(state, "Z" | "X" | "x") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_after_a_hostile_command_name() {
        let line =
            "42 (evil) 1 2 ) R) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(line.as_bytes()).unwrap();
        assert_eq!(stat.start_time, 987_654);
        assert!(!stat.exited);
        assert!(parse_stat(b"42 (short) S 1 2").is_none());
        let not_utf8 =
            b"42 (\xff\xfe) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2";
        let stat = parse_stat(not_utf8).unwrap();
        assert_eq!(stat.start_time, 987_654);
        assert!(stat.exited);
    }

    #[test]
    fn current_process_is_alive_and_a_changed_start_time_is_dead() {
        let me = ProcessId::current().unwrap();
        assert_eq!(me.liveness(), Liveness::Alive);
        let reused = ProcessId { start_time: me.start_time + 1, ..me };
        assert_eq!(reused.liveness(), Liveness::Dead);
        assert_eq!(ProcessId { pid: 0, start_time: 0 }.liveness(), Liveness::Unknown);
    }

    #[test]
    fn an_exited_child_is_not_proven_dead_by_proc_alone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId { pid: child.id(), start_time: 0 };
        let start_time = read_stat(id.pid).unwrap().map(|s| s.start_time);
        child.wait().unwrap();
        let id = ProcessId { start_time: start_time.unwrap_or(0), ..id };
        // A pid missing from /proc may live in another namespace or be hidden: no proof.
        assert_eq!(id.liveness(), Liveness::Unknown);
    }
}
