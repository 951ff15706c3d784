//! zenoh's TLS, mutual TLS and (with the `auth` feature) user/password authentication pass
//! through `shmlane-bridge --config FILE` unchanged: real bridge processes on 127.0.0.1 with
//! certificates made by the `openssl` CLI (the tests skip, saying so, without it), a publisher
//! and a subscriber as child processes (this binary re-executed, see `shmlane_testkit`).
//!
//! Each test: bridge A listens with the setting under test, bridge B connects with the right
//! credentials and carries 1,000 samples of a Block topic in order; then bridge C, configured as
//! B but for the one credential under test (an unknown CA, no client certificate, a wrong
//! password), connects to the same endpoint while a second 1,000 samples cross to B: C never
//! has a peer nor receives a sample, and A goes on carrying to B.
//!
//! Run with `cargo test -p shmlane-bridge --features tls,auth --test tls`.

// Without the `tls` feature this test crate is empty (its documentation comes first so that the
// empty crate is still documented, as the workspace's `missing_docs` asks).
#![cfg(feature = "tls")]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BridgeProc, Hosts, STATS_TIMEOUT, await_bridge, fail, node};
use serde_json::Value;
use shmlane::notify::Blocking;
use shmlane::{Node, Overflow, Topic};
use shmlane_testkit::{
    ChildProc, EXIT_ORDER, arg_u64, child_spec, process_lock, report, spawn_child, split_spec,
};

const CHILD: Duration = Duration::from_secs(60);
/// Samples per batch.
const N: u64 = 1_000;
/// How long a refused bridge is watched (it retries its connection meanwhile).
const REFUSED_FOR: Duration = Duration::from_secs(5);
const SERVICE: &str = "feed";

// ---------------------------------------------------------------------------------------------
// Child roles.

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    let code = match role {
        "publish" => publish(&args),
        "subscribe" => subscribe(&args),
        other => fail(&format!("unknown role {other}")),
    };
    std::process::exit(code);
}

/// The test topic: u64 samples, the Block policy (as the bridge recreates it on the other host).
fn open_topic(node: &Node, service: &str) -> Topic<u64> {
    node.topic::<u64>(service)
        .overflow(Overflow::Block)
        .max_slice_len(4)
        .open_or_create()
        .expect("open the test topic")
}

/// `publish:NS SERVICE COUNT TAG`: waits for a subscriber (the bridge), then sends
/// `TAG << 32 | i` for i in 0..COUNT. Reports `sent`.
fn publish(args: &[&str]) -> i32 {
    let [namespace, service, count, tag] = args else { return fail("publish: bad arguments") };
    let node = node(namespace);
    let topic = open_topic(&node, service);
    let publisher = topic.publisher().expect("a publisher");
    if let Err(why) = await_bridge(&publisher) {
        return fail(why);
    }
    let (count, tag) = (arg_u64(count), arg_u64(tag));
    for i in 0..count {
        if let Err(e) = publisher.send_copy(tag << 32 | i) {
            return fail(&format!("send {i}: {e}"));
        }
    }
    report("sent", count);
    0
}

/// `subscribe:NS SERVICE COUNT`: receives COUNT samples, each tag's indexes in order from 0
/// (exit code `EXIT_ORDER` otherwise), then watches 300 ms for more. Reports `ready`,
/// `received`, `extra`.
fn subscribe(args: &[&str]) -> i32 {
    let [namespace, service, count] = args else { return fail("subscribe: bad arguments") };
    let node = node(namespace);
    let topic = open_topic(&node, service);
    let subscriber = topic.subscriber().expect("a subscriber");
    report("ready", 1);
    let expect = arg_u64(count);
    let mut next: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut received, mut extra) = (0u64, 0u64);
    let mut strategy = Blocking::new();
    let deadline = Instant::now() + CHILD;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = quiet_until.unwrap_or(deadline);
        if now >= until {
            if quiet_until.is_none() {
                eprintln!("subscriber: timed out with {received} of {expect}");
            }
            break;
        }
        let wait = until.min(now + Duration::from_millis(50)) - now;
        let sample = match subscriber.receive_with(&mut strategy, Some(wait)) {
            Ok(sample) => sample,
            Err(shmlane::ReceiveError::TimedOut(_)) => continue,
            Err(e) => return fail(&format!("receive: {e}")),
        };
        let value = *sample;
        let (tag, index) = (value >> 32, value & 0xffff_ffff);
        let expected = next.entry(tag).or_insert(0);
        if index != *expected {
            eprintln!("tag {tag}: got index {index}, expected {}", *expected);
            return EXIT_ORDER;
        }
        *expected += 1;
        if quiet_until.is_some() {
            extra += 1;
        } else {
            received += 1;
            if received == expect {
                quiet_until = Some(Instant::now() + Duration::from_millis(300));
            }
        }
    }
    report("received", received);
    report("extra", extra);
    0
}

// ---------------------------------------------------------------------------------------------
// Certificates.

/// A test CA, a server certificate for `localhost`/127.0.0.1 and a client certificate, both
/// signed by it, and a second CA that signed nothing here ("another CA"), as PEM files in a
/// temporary directory; all keys are ECDSA P-256.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// `None` (with the reason printed) if the `openssl` CLI is not on PATH.
    fn new() -> Option<Pki> {
        match Command::new("openssl").arg("version").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                eprintln!("skipped: `openssl version` failed ({})", out.status);
                return None;
            }
            Err(e) => {
                eprintln!("skipped: no `openssl` CLI on PATH to make test certificates ({e})");
                return None;
            }
        }
        let pki = Pki { dir: tempfile::tempdir().expect("a temporary directory") };
        for ca in ["ca", "other-ca"] {
            pki.key(ca);
            pki.openssl(&[
                "req",
                "-x509",
                "-new",
                "-key",
                &pki.path_of(&format!("{ca}.key")),
                "-subj",
                &format!("/CN=shmlane test {ca}"),
                "-days",
                "2",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-out",
                &pki.path_of(&format!("{ca}.pem")),
            ]);
        }
        pki.leaf("server", "localhost", "serverAuth", "DNS:localhost,IP:127.0.0.1", 1);
        pki.leaf("client", "bridge-b", "clientAuth", "DNS:bridge-b", 2);
        Some(pki)
    }

    /// The path of `file` in the directory, as a string for a config file.
    fn path_of(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {}: {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn key(&self, name: &str) {
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &self.path_of(&format!("{name}.key")),
        ]);
    }

    /// `NAME.key` and `NAME.pem`: an end-entity certificate signed by `ca`.
    fn leaf(&self, name: &str, common_name: &str, usage: &str, names: &str, serial: u32) {
        self.key(name);
        let csr = self.path_of(&format!("{name}.csr"));
        self.openssl(&[
            "req",
            "-new",
            "-key",
            &self.path_of(&format!("{name}.key")),
            "-subj",
            &format!("/CN={common_name}"),
            "-out",
            &csr,
        ]);
        let ext = self.path_of(&format!("{name}.ext"));
        let text = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage={usage}\nsubjectAltName={names}\n"
        );
        std::fs::write(&ext, text).expect("write the extensions file");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path_of("ca.pem"),
            "-CAkey",
            &self.path_of("ca.key"),
            "-set_serial",
            &serial.to_string(),
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &self.path_of(&format!("{name}.pem")),
        ]);
    }

    /// Writes `text` to `name` in the directory and returns its path.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write a config file");
        path
    }
}

/// A JSON string literal (valid JSON5) for a path.
fn quoted(path: &str) -> String {
    Value::from(path).to_string()
}

// ---------------------------------------------------------------------------------------------
// The scenario.

/// The latest statistics' `peers` (`None` before the first statistics line).
fn peers(bridge: &BridgeProc) -> Option<u64> {
    bridge.stats().and_then(|s| s.get("peers")?.as_u64())
}

fn uptime_ms(bridge: &BridgeProc) -> u64 {
    bridge.stats().and_then(|s| s.get("uptime_ms")?.as_u64()).unwrap_or(0)
}

/// Starts the subscriber on host B and waits until it holds the topic.
fn subscriber_on_b(hosts: &Hosts) -> ChildProc {
    let mut sub = spawn_child("subscribe", &[&hosts.b, SERVICE, &N.to_string()]);
    sub.report("ready", CHILD);
    sub
}

/// N samples tagged `tag` from a publisher on host A reach the subscriber `sub` on host B,
/// all and in order.
fn carry_batch(hosts: &Hosts, sub: &mut ChildProc, tag: u64) {
    let mut publisher =
        spawn_child("publish", &[&hosts.a, SERVICE, &N.to_string(), &tag.to_string()]);
    assert_eq!(sub.report_u64("received", CHILD), N, "samples of batch {tag} received");
    assert_eq!(sub.report_u64("extra", CHILD), 0, "samples beyond batch {tag}");
    assert_eq!(publisher.report_u64("sent", CHILD), N);
    sub.expect_success(CHILD);
    publisher.expect_success(CHILD);
}

/// Bridge A (`--out feed`, `a_config`: listens) and bridge B (`--in feed`, `b_config`:
/// connects) carry N samples in order. Then bridge C (`--in feed`, `refused_config`: connects
/// to the same endpoint) starts, a second N samples cross to B while C tries, and for
/// `REFUSED_FOR` C has no peer and receives nothing; A still has B as its one peer and carried
/// both batches. `refusal` lists strings one of which C's or A's log (zenoh's warnings) must
/// contain: the reason zenoh gives, so that C is shown refused for the credential under test
/// and not for anything else. Everything ends cleanly, nothing left in /dev/shm.
fn carried_then_refused(
    tag: &str,
    a_config: &Path,
    b_config: &Path,
    refused_config: &Path,
    refusal: &[&str],
) {
    let hosts = Hosts::new(tag);
    // Host C: its own namespace (cleaned up by its own `Hosts`).
    let hosts_c = Hosts::new(&format!("{tag}c"));
    let config = |path: &Path| path.display().to_string();
    let mut a = hosts.bridge(&hosts.a, &["--out", SERVICE], &["--config", &config(a_config)]);
    let mut b = hosts.bridge(&hosts.b, &["--in", SERVICE], &["--config", &config(b_config)]);
    a.wait_connected();
    b.wait_connected();
    // The publisher waits for bridge A's subscriber, which A takes once B listens.
    let mut sub = subscriber_on_b(&hosts);
    carry_batch(&hosts, &mut sub, 1);
    b.wait_until("B counted the first batch", STATS_TIMEOUT, |b| {
        b.counter("topic", SERVICE, "samples_in") == N
    });

    // Bridge C: as B, but for the credential under test.
    let mut c =
        hosts_c.bridge(&hosts_c.a, &["--in", SERVICE], &["--config", &config(refused_config)]);
    let mut sub = subscriber_on_b(&hosts);
    carry_batch(&hosts, &mut sub, 2);
    // Every statistics line of C (one per 0.1 s) until it has run REFUSED_FOR: no peer, ever.
    let mut most_peers = 0;
    c.wait_until("C's statistics", STATS_TIMEOUT, |c| {
        most_peers = most_peers.max(peers(c).unwrap_or(0));
        uptime_ms(c) >= REFUSED_FOR.as_millis() as u64
    });
    assert_eq!(most_peers, 0, "C (refused) got a zenoh peer; C's log:\n{}", c.stderr());
    assert_eq!(peers(&c), Some(0), "C's statistics");
    assert_eq!(c.counter("topic", SERVICE, "samples_in"), 0, "C (refused) received samples");
    assert_eq!(peers(&a), Some(1), "A's peers: B only");
    b.wait_until("B counted both batches", STATS_TIMEOUT, |b| {
        b.counter("topic", SERVICE, "samples_in") == 2 * N
    });
    a.wait_until("A counted both batches", STATS_TIMEOUT, |a| {
        a.counter("topic", SERVICE, "samples_out") == 2 * N
    });
    assert_eq!(b.counter("topic", SERVICE, "drops"), 0);
    let logs = format!("C's log:\n{}\nA's log:\n{}", c.stderr(), a.stderr());
    assert!(
        refusal.iter().any(|why| logs.contains(why)),
        "the logs name none of {refusal:?} as the reason C was refused:\n{logs}"
    );
    c.terminate();
    a.terminate();
    b.terminate();
    hosts.assert_clean();
    hosts_c.assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// TLS: A listens on `tls/127.0.0.1:PORT` with a certificate of the test CA; B trusts that CA
/// and carries; C trusts another CA only and is refused.
#[test]
fn tls_carries_and_refuses_an_unknown_ca() {
    let _serial = process_lock();
    let Some(pki) = Pki::new() else { return };
    let endpoint = format!("tls/127.0.0.1:{}", common::free_port());
    let a = pki.write(
        "a.json5",
        &format!(
            "{{\n  listen: {{ endpoints: [{endpoint}] }},\n  transport: {{ link: {{ tls: {{\n    \
             listen_certificate: {cert},\n    listen_private_key: {key},\n  }} }} }},\n}}\n",
            endpoint = quoted(&endpoint),
            cert = quoted(&pki.path_of("server.pem")),
            key = quoted(&pki.path_of("server.key")),
        ),
    );
    let connector = |ca: &str| {
        format!(
            "{{\n  connect: {{ endpoints: [{endpoint}] }},\n  transport: {{ link: {{ tls: {{\n    \
             root_ca_certificate: {ca},\n  }} }} }},\n}}\n",
            endpoint = quoted(&endpoint),
            ca = quoted(&pki.path_of(ca)),
        )
    };
    let b = pki.write("b.json5", &connector("ca.pem"));
    let c = pki.write("c.json5", &connector("other-ca.pem"));
    carried_then_refused("tls", &a, &b, &c, &["UnknownCA"]);
}

/// Mutual TLS: A requires client certificates of the test CA (`enable_mtls: true`); B presents
/// one and carries; C trusts the same CA but presents none and is refused.
#[test]
fn mutual_tls_refuses_a_bridge_without_a_client_certificate() {
    let _serial = process_lock();
    let Some(pki) = Pki::new() else { return };
    let endpoint = format!("tls/127.0.0.1:{}", common::free_port());
    let a = pki.write(
        "a.json5",
        &format!(
            "{{\n  listen: {{ endpoints: [{endpoint}] }},\n  transport: {{ link: {{ tls: {{\n    \
             root_ca_certificate: {ca},\n    listen_certificate: {cert},\n    \
             listen_private_key: {key},\n    enable_mtls: true,\n  }} }} }},\n}}\n",
            endpoint = quoted(&endpoint),
            ca = quoted(&pki.path_of("ca.pem")),
            cert = quoted(&pki.path_of("server.pem")),
            key = quoted(&pki.path_of("server.key")),
        ),
    );
    let b = pki.write(
        "b.json5",
        &format!(
            "{{\n  connect: {{ endpoints: [{endpoint}] }},\n  transport: {{ link: {{ tls: {{\n    \
             root_ca_certificate: {ca},\n    enable_mtls: true,\n    \
             connect_certificate: {cert},\n    connect_private_key: {key},\n  }} }} }},\n}}\n",
            endpoint = quoted(&endpoint),
            ca = quoted(&pki.path_of("ca.pem")),
            cert = quoted(&pki.path_of("client.pem")),
            key = quoted(&pki.path_of("client.key")),
        ),
    );
    let c = pki.write(
        "c.json5",
        &format!(
            "{{\n  connect: {{ endpoints: [{endpoint}] }},\n  transport: {{ link: {{ tls: {{\n    \
             root_ca_certificate: {ca},\n  }} }} }},\n}}\n",
            endpoint = quoted(&endpoint),
            ca = quoted(&pki.path_of("ca.pem")),
        ),
    );
    carried_then_refused("mtls", &a, &b, &c, &["peer sent no certificates"]);
}

/// User/password authentication (zenoh's `transport.auth.usrpwd`, feature `auth`), over TCP:
/// A accepts the users of its dictionary file; B gives the right password and carries; C gives
/// a wrong one and is refused.
#[cfg(feature = "auth")]
#[test]
fn user_password_refuses_a_wrong_password() {
    let _serial = process_lock();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write a config file");
        path
    };
    let users = write("users.txt", "bridge-b:right-password\n");
    let endpoint = format!("tcp/127.0.0.1:{}", common::free_port());
    let a = write(
        "a.json5",
        &format!(
            "{{\n  listen: {{ endpoints: [{endpoint}] }},\n  \
             transport: {{ auth: {{ usrpwd: {{ dictionary_file: {users} }} }} }},\n}}\n",
            endpoint = quoted(&endpoint),
            users = quoted(&users.display().to_string()),
        ),
    );
    let connector = |password: &str| {
        format!(
            "{{\n  connect: {{ endpoints: [{endpoint}] }},\n  transport: {{ auth: {{ usrpwd: {{ \
             user: \"bridge-b\", password: {password} }} }} }},\n}}\n",
            endpoint = quoted(&endpoint),
            password = quoted(password),
        )
    };
    let b = write("b.json5", &connector("right-password"));
    let c = write("c.json5", &connector("wrong-password"));
    // A's log says nothing at the default level; C's says A closed the link at the step that
    // carries the password (OpenSyn).
    carried_then_refused("usrpwd", &a, &b, &c, &["in response to an OpenSyn"]);
}
