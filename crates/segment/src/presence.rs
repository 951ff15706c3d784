//! Proof of death that holds across pid namespaces: every process that takes a role holds an
//! exclusive `flock` on a presence file of its own for as long as it lives.
//!
//! A pid names a process only inside one pid namespace, and `/proc` may hide live processes
//! (`hidepid=2`, another namespace's `/proc`, a thread-group leader that called
//! `pthread_exit`), so neither a missing `/proc/PID` nor a zombie state proves anything. A lock
//! does: the kernel drops it when the last descriptor of its open file goes, that is when the
//! process (and any child it forked without exec) has ended, and every process that can open
//! the file can test it, whatever its namespace. This is how iceoryx2 watches its nodes.
//!
//! A process registers once, lazily, when it first needs an identity ([`current`]): it draws a
//! random 64-bit token, creates `.shmlane-live.TOKEN.tmp` in [`PRESENCE_DIR`], locks it
//! exclusively, writes its identity into it and renames it to `shmlane-live.TOKEN` without
//! replacing anything. So a file under a final name was locked at birth: a final name whose
//! lock is free belongs to a process that ended. Only such files are removed
//! ([`remove_dead`]), which makes a missing file proof of death too: the token was published
//! (in a role word, a header) only after its file existed.
//!
//! [`liveness`] of a token, in order:
//!
//! | what is found                                                     | verdict   |
//! |-------------------------------------------------------------------|-----------|
//! | no file `shmlane-live.TOKEN`                                       | `Dead`    |
//! | the file records another boot id (a directory that outlived a reboot) | `Dead` |
//! | its lock is free (a shared non-blocking `flock` succeeds)         | `Dead`    |
//! | lock held, but the file was removed since we opened it            | `Dead`    |
//! | lock held, same pid namespace and boot, `/proc/PID` shows another start time | `Dead` (the lock lives on in a child forked without exec) |
//! | lock held otherwise                                               | `Alive`   |
//! | the file cannot be opened or locked for another reason            | `Unknown` |
//!
//! Processes that share segments must share [`PRESENCE_DIR`] (`/dev/shm`): containers run with
//! `--ipc=host` or with one tmpfs mounted at `/dev/shm` in each. A forked child that does not
//! exec registers anew on its first use; until then its parent's token stays alive while the
//! child runs (the conservative side).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::fs::{self, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::Liveness;

/// Where presence files live: the directory every peer shares (POSIX shared memory).
pub const PRESENCE_DIR: &str = "/dev/shm";
/// File-name prefix of a presence file; the token follows as 16 hex digits.
pub const PRESENCE_PREFIX: &str = "shmlane-live.";
/// How old an unrenamed temporary presence file must be before it counts as abandoned.
const TMP_GRACE: Duration = Duration::from_secs(10);
/// First line of a presence file.
const MAGIC_LINE: &str = "shmlane presence 1";
/// At most this much of a presence file is read (a hostile file can be any size).
const MAX_FILE: usize = 512;

/// What a presence file records about its process. Every field is what the file says: a file
/// is written by its owner, and another process of the same uid may have rewritten it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The pid, in the owner's pid namespace.
    pub pid: Option<u32>,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
    pub start_time: Option<u64>,
    /// Inode of the owner's pid namespace (`/proc/self/ns/pid`).
    pub pid_ns: Option<u64>,
    /// The kernel's boot id when the owner registered.
    pub boot_id: Option<String>,
    /// The owner's effective uid.
    pub uid: Option<u32>,
}

/// This process's registration: the token and the descriptor that holds its lock.
struct Registration {
    token: u64,
    pid: u32,
    _lock: OwnedFd,
}

static CURRENT: Mutex<Option<Registration>> = Mutex::new(None);

/// This process's token, registering it first if needed (and anew in a forked child).
pub fn current() -> io::Result<u64> {
    let mut current = CURRENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let pid = std::process::id();
    if let Some(registration) = current.as_ref().filter(|r| r.pid == pid) {
        return Ok(registration.token);
    }
    // A child forked without exec closes its copy of the parent's descriptor here, so the
    // parent's token dies with the parent.
    let registration = register(Path::new(PRESENCE_DIR), pid)?;
    let token = registration.token;
    *current = Some(registration);
    Ok(token)
}

/// The path of `token`'s presence file.
pub fn path_of(token: u64) -> PathBuf {
    Path::new(PRESENCE_DIR).join(format!("{PRESENCE_PREFIX}{token:016x}"))
}

fn register(dir: &Path, pid: u32) -> io::Result<Registration> {
    let identity = own_identity(pid);
    for _ in 0..16 {
        let token = random_token()?;
        let tmp = dir.join(format!(".{PRESENCE_PREFIX}{token:016x}.tmp"));
        let flags = OFlags::CREATE
            | OFlags::EXCL
            | OFlags::RDWR
            | OFlags::CLOEXEC
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK;
        let fd = match fs::open(&tmp, flags, Mode::from_raw_mode(0o644)) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => continue,
            Err(errno) => return Err(context(errno, "create", &tmp)),
        };
        let written = (|| {
            // Readable by every user, so tools of other users can test it; the umask only
            // removes bits at open.
            fs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
            fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
            write_all(&fd, identity.render().as_bytes())
        })();
        let renamed = written.and_then(|()| {
            let path = path_of_in(dir, token);
            fs::renameat_with(fs::CWD, &tmp, fs::CWD, &path, fs::RenameFlags::NOREPLACE)
        });
        match renamed {
            Ok(()) => return Ok(Registration { token, pid, _lock: fd }),
            Err(Errno::EXIST) => {
                let _ = std::fs::remove_file(&tmp);
            }
            Err(errno) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(context(errno, "register presence file", &tmp));
            }
        }
    }
    Err(io::Error::other("no free presence token after 16 random draws"))
}

fn path_of_in(dir: &Path, token: u64) -> PathBuf {
    dir.join(format!("{PRESENCE_PREFIX}{token:016x}"))
}

/// Whether the process that registered `token` still runs; only [`Liveness::Dead`] is proof
/// of death. See the module documentation for the rules.
pub fn liveness(token: u64) -> Liveness {
    liveness_in(Path::new(PRESENCE_DIR), token)
}

pub(crate) fn liveness_in(dir: &Path, token: u64) -> Liveness {
    match open_existing(&path_of_in(dir, token)) {
        Ok(fd) => liveness_of(&fd),
        Err(Errno::NOENT) => Liveness::Dead,
        Err(_) => Liveness::Unknown,
    }
}

/// The verdict on an open presence file (the table's rows after the first).
fn liveness_of(fd: &OwnedFd) -> Liveness {
    let identity = read_identity(fd).unwrap_or_default();
    let mine = system_facts();
    if let (Some(theirs), Some(ours)) = (&identity.boot_id, &mine.boot_id)
        && theirs != ours
    {
        return Liveness::Dead;
    }
    match fs::flock(fd, FlockOperation::NonBlockingLockShared) {
        // Our probe lock goes with `fd`.
        Ok(()) => return Liveness::Dead,
        Err(Errno::WOULDBLOCK) => {}
        Err(_) => return Liveness::Unknown,
    }
    // Removed since we opened it: only the files of ended processes are removed (the lock we
    // could not take may be a sweeper's of an older version, which locked exclusively).
    if fs::fstat(fd).is_ok_and(|stat| stat.st_nlink == 0) {
        return Liveness::Dead;
    }
    let same_namespace = identity.pid_ns.is_some() && identity.pid_ns == mine.pid_ns;
    let same_boot = identity.boot_id.is_some() && identity.boot_id == mine.boot_id;
    if let (true, true, Some(pid), Some(start_time)) =
        (same_namespace, same_boot, identity.pid, identity.start_time)
        && crate::liveness::reused(pid, start_time)
    {
        return Liveness::Dead;
    }
    Liveness::Alive
}

/// What `token`'s presence file records, if it can be read.
pub fn identity(token: u64) -> Option<Identity> {
    let fd = open_existing(&path_of(token)).ok()?;
    read_identity(&fd)
}

/// Removes the presence files of processes that ended (and temporary files abandoned before
/// their rename); returns how many it removed and the files it could not remove. Never
/// removes the file of a live process: each is removed only while this call holds its lock.
pub fn remove_dead() -> (usize, Vec<(PathBuf, io::Error)>) {
    let (removed, failed) = remove_dead_in(Path::new(PRESENCE_DIR));
    if removed > 0 {
        tracing::debug!(target: "shmlane_segment", removed, "removed presence files of ended processes");
    }
    (removed, failed)
}

pub(crate) fn remove_dead_in(dir: &Path) -> (usize, Vec<(PathBuf, io::Error)>) {
    let mut removed = 0;
    let mut failed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, failed) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let tmp = name.starts_with(&format!(".{PRESENCE_PREFIX}")) && name.ends_with(".tmp");
        if !name.starts_with(PRESENCE_PREFIX) && !tmp {
            continue;
        }
        let path = entry.path();
        match remove_if_dead(&path, tmp) {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(error) => failed.push((path, error)),
        }
    }
    (removed, failed)
}

/// The lock a sweep holds on a final name while it checks and removes it.
const SWEEP_LOCK: FlockOperation = FlockOperation::NonBlockingLockShared;
/// The lock a sweep holds on an abandoned temporary file.
const SWEEP_LOCK_TMP: FlockOperation = FlockOperation::NonBlockingLockExclusive;

fn remove_if_dead(path: &Path, tmp: bool) -> io::Result<bool> {
    let fd = match open_existing(path) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::LOOP) => return Ok(false),
        Err(errno) => return Err(context(errno, "open", path)),
    };
    let stat = fs::fstat(&fd).map_err(|e| context(e, "fstat", path))?;
    if fs::FileType::from_raw_mode(stat.st_mode) != fs::FileType::RegularFile {
        return Ok(false);
    }
    if tmp {
        // A registering process creates the file, then locks it: give it time to.
        let age = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(Duration::from_secs(u64::try_from(stat.st_mtime).unwrap_or(0)));
        if age < TMP_GRACE {
            return Ok(false);
        }
    }
    // A final name's owner locked it exclusively before the name existed, so a shared lock
    // proves the owner gone, and taking no more than that never makes the file look alive to
    // a prober meanwhile (its shared probe succeeds too). A temporary file may be one a
    // registering process is about to lock: exclusive, so that it cannot while we remove.
    let lock = if tmp { SWEEP_LOCK_TMP } else { SWEEP_LOCK };
    match fs::flock(&fd, lock) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Ok(false),
        Err(errno) => return Err(context(errno, "flock", path)),
    }
    match fs::lstat(path) {
        Ok(there) if (there.st_dev, there.st_ino) == (stat.st_dev, stat.st_ino) => {
            match std::fs::remove_file(path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        }
        _ => Ok(false),
    }
}

fn open_existing(path: &Path) -> Result<OwnedFd, Errno> {
    // NONBLOCK: a FIFO planted under the name does not block the open.
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    fs::open(path, flags, Mode::empty())
}

fn read_identity(fd: impl AsFd) -> Option<Identity> {
    let mut bytes = [0u8; MAX_FILE];
    let mut len = 0;
    while len < bytes.len() {
        match rustix::io::pread(&fd, &mut bytes[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(Errno::INTR) => {}
            Err(_) => return None,
        }
    }
    Identity::parse(std::str::from_utf8(&bytes[..len]).ok()?)
}

impl Identity {
    fn render(&self) -> String {
        let mut text = format!("{MAGIC_LINE}\n");
        let mut line = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                text.push_str(&format!("{key} {value}\n"));
            }
        };
        line("pid", self.pid.map(|v| v.to_string()));
        line("start_time", self.start_time.map(|v| v.to_string()));
        line("pid_ns", self.pid_ns.map(|v| v.to_string()));
        line("boot_id", self.boot_id.clone());
        line("uid", self.uid.map(|v| v.to_string()));
        text
    }

    fn parse(text: &str) -> Option<Identity> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC_LINE {
            return None;
        }
        let mut identity = Identity::default();
        for line in lines {
            let Some((key, value)) = line.split_once(' ') else { continue };
            match key {
                "pid" => identity.pid = value.parse().ok(),
                "start_time" => identity.start_time = value.parse().ok(),
                "pid_ns" => identity.pid_ns = value.parse().ok(),
                "boot_id" if value.len() <= 64 => identity.boot_id = Some(value.to_owned()),
                "uid" => identity.uid = value.parse().ok(),
                _ => {}
            }
        }
        Some(identity)
    }
}

/// Facts about this system as this process sees it.
struct SystemFacts {
    pid_ns: Option<u64>,
    boot_id: Option<String>,
}

fn system_facts() -> SystemFacts {
    SystemFacts { pid_ns: own_pid_ns(), boot_id: boot_id() }
}

fn own_identity(pid: u32) -> Identity {
    let facts = system_facts();
    Identity {
        pid: Some(pid),
        start_time: crate::ProcessId::current().ok().map(|p| p.start_time),
        pid_ns: facts.pid_ns,
        boot_id: facts.boot_id,
        uid: Some(rustix::process::geteuid().as_raw()),
    }
}

/// The inode of our pid namespace, from the `pid:[INODE]` link.
fn own_pid_ns() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let link = link.as_os_str().to_str()?;
    link.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// The kernel's boot id (a random UUID drawn at each boot).
pub(crate) fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = text.trim();
    (!id.is_empty() && id.len() <= 64).then(|| id.to_owned())
}

fn random_token() -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
    // Zero means "no owner" in a role word.
    Ok(u64::from_ne_bytes(bytes).max(1))
}

fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

fn context(errno: Errno, op: &str, path: &Path) -> io::Error {
    let name = path.file_name().unwrap_or(OsStr::new("?")).to_string_lossy();
    io::Error::new(io::Error::from(errno).kind(), format!("{op} {name}: {errno}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "shmlane-presence-test.{}.{}",
            std::process::id(),
            random_token().unwrap()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_registered_token_is_alive_and_dead_once_its_lock_is_gone() {
        let dir = temp_dir();
        let registration = register(&dir, std::process::id()).unwrap();
        let token = registration.token;
        assert_eq!(liveness_in(&dir, token), Liveness::Alive, "our own lock proves us alive");
        assert_eq!(remove_dead_in(&dir).0, 0, "a live file is never removed");
        drop(registration);
        assert_eq!(liveness_in(&dir, token), Liveness::Dead, "a free lock proves death");
        assert_eq!(remove_dead_in(&dir).0, 1);
        assert_eq!(liveness_in(&dir, token), Liveness::Dead, "a removed file proves death");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sweep_in_progress_never_makes_a_dead_owner_look_alive() {
        let dir = temp_dir();
        let registration = register(&dir, std::process::id()).unwrap();
        let token = registration.token;
        let path = path_of_in(&dir, token);
        drop(registration);
        // A sweeper holding its lock on the dead owner's file, between its check and removal.
        let sweeper = open_existing(&path).unwrap();
        fs::flock(&sweeper, SWEEP_LOCK).unwrap();
        assert_eq!(liveness_in(&dir, token), Liveness::Dead, "while a sweep holds it");
        drop(sweeper);
        // A prober that opened the file before a sweep (of any version) removed it.
        let probe = open_existing(&path).unwrap();
        let old_sweeper = open_existing(&path).unwrap();
        fs::flock(&old_sweeper, FlockOperation::NonBlockingLockExclusive).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(liveness_of(&probe), Liveness::Dead, "removed after we opened it");
        drop(old_sweeper);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn identity_round_trips_and_hostile_text_is_refused() {
        let identity = own_identity(42);
        assert_eq!(Identity::parse(&identity.render()), Some(identity));
        assert_eq!(Identity::parse("not ours\npid 1\n"), None);
        let odd = Identity::parse(&format!("{MAGIC_LINE}\npid x\nboot_id {}\n", "b".repeat(99)));
        assert_eq!(odd, Some(Identity::default()));
    }

    #[test]
    fn another_boot_is_dead_even_with_the_lock_held() {
        let dir = temp_dir();
        let token = random_token().unwrap();
        let path = path_of_in(&dir, token);
        let other_boot = Identity { boot_id: Some("another-boot".into()), ..own_identity(1) };
        std::fs::write(&path, other_boot.render()).unwrap();
        let held = std::fs::File::open(&path).unwrap();
        fs::flock(&held, FlockOperation::LockExclusive).unwrap();
        assert_eq!(liveness_in(&dir, token), Liveness::Dead);
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_held_lock_whose_recorded_pid_was_reused_is_dead() {
        let dir = temp_dir();
        let token = random_token().unwrap();
        let path = path_of_in(&dir, token);
        let mut me = own_identity(std::process::id());
        // Our own pid with another start time: the recorded process ended and its pid is ours.
        me.start_time = me.start_time.map(|t| t + 1);
        std::fs::write(&path, me.render()).unwrap();
        let held = std::fs::File::open(&path).unwrap();
        fs::flock(&held, FlockOperation::LockExclusive).unwrap();
        assert_eq!(liveness_in(&dir, token), Liveness::Dead);
        me.pid_ns = me.pid_ns.map(|ns| ns + 1);
        std::fs::write(&path, me.render()).unwrap();
        assert_eq!(liveness_in(&dir, token), Liveness::Alive, "another namespace's pid");
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_current_token_is_stable_and_alive() {
        let token = current().unwrap();
        assert_eq!(current().unwrap(), token);
        assert_eq!(liveness(token), Liveness::Alive);
        assert_eq!(identity(token).and_then(|i| i.pid), Some(std::process::id()));
    }
}
