//! What the bridge tests share: two "hosts" (namespaces) joined by two bridge processes over
//! TCP on 127.0.0.1, the bridges' statistics, and the check that nothing is left in /dev/shm.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde_json::Value;

/// How long a test waits for a bridge's statistics to reach a state.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(30);

/// A test's two hosts: namespaces `a` and `b` (unique per process and test), a key template
/// unique to the test, and a free port for bridge A to listen on.
pub struct Hosts {
    pub a: String,
    pub b: String,
    pub template: String,
    pub port: u16,
    pub stop_file: PathBuf,
}

impl Hosts {
    pub fn new(tag: &str) -> Hosts {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let stop_file = std::env::temp_dir().join(format!("shmlane-bridge-test-{pid}-{n}.stop"));
        let _ = std::fs::remove_file(&stop_file);
        Hosts {
            a: format!("br{tag}a{pid}x{n}"),
            b: format!("br{tag}b{pid}x{n}"),
            template: format!("test{pid}x{n}/{{service}}"),
            port: free_port(),
            stop_file,
        }
    }

    /// Bridge A: listens on the port, carries `rules` (`--out X`, `--in X`, `--both X`) of
    /// namespace `a`.
    pub fn bridge_a(&self, rules: &[&str]) -> BridgeProc {
        let listen = format!("tcp/127.0.0.1:{}", self.port);
        self.bridge(&self.a, rules, &["--listen", &listen])
    }

    /// Bridge B: connects to bridge A's port, carries `rules` of namespace `b`.
    pub fn bridge_b(&self, rules: &[&str]) -> BridgeProc {
        let connect = format!("tcp/127.0.0.1:{}", self.port);
        self.bridge(&self.b, rules, &["--connect", &connect])
    }

    pub fn bridge(&self, namespace: &str, rules: &[&str], extra: &[&str]) -> BridgeProc {
        let mut args: Vec<&str> = vec![
            "--namespace",
            namespace,
            "--key",
            &self.template,
            "--stats",
            "0.1",
            "--scan-ms",
            "50",
        ];
        args.extend_from_slice(rules);
        args.extend_from_slice(extra);
        BridgeProc::spawn(namespace, &args)
    }

    /// Tells children that run until a file exists to finish.
    pub fn finish(&self) {
        std::fs::write(&self.stop_file, b"").expect("create the stop file");
    }

    pub fn stop_path(&self) -> String {
        self.stop_file.display().to_string()
    }

    /// Fails if anything of either namespace is left in /dev/shm.
    pub fn assert_clean(&self) {
        for namespace in [&self.a, &self.b] {
            let left = shm_files(namespace);
            assert!(left.is_empty(), "left in /dev/shm for namespace {namespace}: {left:?}");
        }
    }
}

impl Drop for Hosts {
    /// After the test's processes are gone (declared after the hosts, they drop first): a test
    /// that failed half-way leaves nothing behind either (a passing one checked that it left
    /// nothing, with `assert_clean`).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.stop_file);
        for namespace in [&self.a, &self.b] {
            for name in shm_files(namespace) {
                let _ = std::fs::remove_file(std::path::Path::new("/dev/shm").join(name));
            }
        }
    }
}

/// The files of `namespace` in /dev/shm (`shmlane.NAMESPACE.*`).
pub fn shm_files(namespace: &str) -> Vec<String> {
    let prefix = format!("shmlane.{namespace}.");
    let Ok(dir) = std::fs::read_dir("/dev/shm") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// A port nobody listens on now (the bridge binds it a moment later).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("its address").port()
}

/// A `shmlane-bridge` process, with its statistics lines read as they come.
pub struct BridgeProc {
    pub name: String,
    args: Vec<String>,
    child: Child,
    latest: Arc<Mutex<Option<Value>>>,
    stderr: Arc<Mutex<String>>,
    reaped: bool,
}

impl BridgeProc {
    pub fn spawn(name: &str, args: &[&str]) -> BridgeProc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmlane-bridge"))
            .args(args)
            .env("RUST_LOG", "warn,shmlane_bridge=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start shmlane-bridge");
        let latest = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().expect("piped stdout");
        let sink = Arc::clone(&latest);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && let Some(stats) = value.get("stats")
                {
                    *sink.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats.clone());
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let text = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => text
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        BridgeProc {
            name: name.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            child,
            latest,
            stderr,
            reaped: false,
        }
    }

    /// The same bridge started again (after a kill).
    pub fn restart(&self) -> BridgeProc {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        BridgeProc::spawn(&self.name, &args)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The latest statistics line, if one came.
    pub fn stats(&self) -> Option<Value> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A service's counter in the latest statistics (0 if the service is not listed yet).
    pub fn counter(&self, kind: &str, service: &str, counter: &str) -> u64 {
        self.service(kind, service).and_then(|s| s.get(counter)?.as_u64()).unwrap_or(0)
    }

    pub fn flag(&self, kind: &str, service: &str, flag: &str) -> bool {
        self.service(kind, service).and_then(|s| s.get(flag)?.as_bool()).unwrap_or(false)
    }

    pub fn service(&self, kind: &str, service: &str) -> Option<Value> {
        let stats = self.stats()?;
        stats
            .get("services")?
            .as_array()?
            .iter()
            .find(|s| {
                s.get("kind").and_then(Value::as_str) == Some(kind)
                    && s.get("service").and_then(Value::as_str) == Some(service)
            })
            .cloned()
    }

    /// Waits until `done` holds for this bridge's statistics; fails the test (with the
    /// bridge's log) after `timeout`, or if the bridge exits.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&BridgeProc) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.reaped = true;
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "bridge {} exited ({status}) while waiting for {what}. stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bridge {}: timed out after {timeout:?} waiting for {what}; last stats: {}\nstderr:\n{}",
                self.name,
                self.stats().map(|s| s.to_string()).unwrap_or_default(),
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the bridge has a zenoh peer.
    pub fn wait_connected(&mut self) {
        self.wait_until("a zenoh peer", STATS_TIMEOUT, |b| {
            b.stats().and_then(|s| s.get("peers")?.as_u64()).is_some_and(|p| p >= 1)
        });
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }

    /// SIGTERM, then waits for a clean exit (code 0) and returns the last statistics.
    pub fn terminate(&mut self) -> Option<Value> {
        let pid = Pid::from_raw(self.child.id() as i32).expect("a child pid");
        let _ = rustix::process::kill_process(pid, Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait on the bridge") {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "bridge {} did not stop within 20 s of SIGTERM. stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        self.reaped = true;
        // Let the readers see the last lines.
        thread::sleep(Duration::from_millis(100));
        assert!(
            status.success(),
            "bridge {} exited with {status}. stderr:\n{}",
            self.name,
            self.stderr()
        );
        self.stats()
    }
}

impl Drop for BridgeProc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child role's failure: the reason on stderr, `EXIT_FAILED` as its exit code.
pub fn fail(why: &str) -> i32 {
    eprintln!("child failed: {why}");
    shmlane_testkit::EXIT_FAILED
}

/// A child's node in `namespace` (a "host").
pub fn node(namespace: &str) -> shmlane::Node {
    shmlane::Node::builder("test").namespace(namespace).create().expect("a node")
}

/// `publisher`, made ready for a test's stream: sends wait up to 20 s for room, and it waits
/// (up to 30 s) for its first subscriber, the bridge. `Err` says why it came to nothing.
pub fn await_bridge<T>(publisher: &shmlane::Publisher<T>) -> Result<(), &'static str> {
    publisher.set_block_timeout(Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(30);
    while publisher.subscribers() == 0 {
        if Instant::now() > deadline {
            return Err("no subscriber (bridge) came");
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
