//! C programs (`tests/c/*.c`, `examples/c/hello.c`) compiled with the system C compiler
//! (`$CC`, else `cc`) against this crate's cdylib and `include/shmlane.h`, run as processes of
//! their own, exchanging ticks, events and rpc calls with this Rust test through shared
//! memory; plus type mismatches and misuse seen from C. Then C++ (`include/shmlane.hpp`,
//! `tests/cpp/*.cpp`, `examples/cpp/audio_blocks.cpp`) compiled with `$CXX`, else `g++`, as
//! C++20.
//!
//! The library is the one cargo built for this test (the crate's `cdylib`, beside this test
//! binary in the `deps` directory), so these tests run under plain `cargo test`, with any
//! target directory or profile. Each test has a namespace of its own (its name and the pid),
//! so tests never share a service, and checks that nothing of it is left in /dev/shm.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use shmlane::notify::Blocking;
use shmlane::{FromBytes, Immutable, IntoBytes, KnownLayout, Node, Overflow};
use shmlane_testkit::{ChildProc, SHM_DIR, spawn_child_under};

/// The C programs' `struct tick` (tests/c/common.h), field for field.
#[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[zerocopy(crate = "shmlane::zerocopy")]
#[repr(C)]
struct Tick {
    sequence: u64,
    price: f64,
    instrument: u32,
    quantity: u32,
    checksum: u64,
}

/// The tick numbered `sequence` (as `tick_for` in tests/c/common.h).
fn tick_for(sequence: u64) -> Tick {
    Tick {
        sequence,
        price: 100.0 + sequence as f64 * 0.25,
        instrument: (sequence % 7) as u32,
        quantity: (sequence * 3 + 1) as u32,
        checksum: sequence.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed,
    }
}

/// Ticks each direction sends one by one, then a slice of this many more.
const TICKS: u64 = 1000;
const SLICE: usize = 16;
/// Deadline of every wait on a C program or a sample.
const TIMEOUT: Duration = Duration::from_secs(30);

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding `libshmlane_ffi.so`: cargo builds the crate's library (all its
/// crate types) before this test, into the `deps` directory this binary is in.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let deps = exe.parent().expect("the test binary's directory").to_owned();
    let library = deps.join("libshmlane_ffi.so");
    assert!(
        library.exists(),
        "{} is missing: cargo builds it with the crate's tests (crate-type cdylib)",
        library.display()
    );
    deps
}

/// Compiles a C program (`-std` as given, every warning an error) against the header and the
/// cdylib; returns the executable.
fn compile(source: &Path, name: &str, standard: &str) -> PathBuf {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let (executable, output) = compiler_command(&compiler, source, name, standard);
    assert!(
        output.status.success(),
        "{compiler} failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    executable
}

/// Compiles a C++ program (C++20, every warning an error); returns the executable.
fn compile_cpp(source: &Path, name: &str) -> PathBuf {
    let (executable, output) = compile_cpp_output(source, name);
    assert!(
        output.status.success(),
        "the C++ compiler failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    executable
}

/// Runs the C++ compiler (`$CXX`, else `g++`) on `source`.
fn compile_cpp_output(source: &Path, name: &str) -> (PathBuf, std::process::Output) {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    compiler_command(&compiler, source, name, "c++20")
}

/// Runs `compiler` on `source` with the include paths and the library; returns where the
/// executable goes and what the compiler said.
fn compiler_command(
    compiler: &str,
    source: &Path,
    name: &str,
    standard: &str,
) -> (PathBuf, std::process::Output) {
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ffi-c");
    std::fs::create_dir_all(&out_dir).expect("create the C output directory");
    let executable = out_dir.join(name);
    let library = library_dir();
    let output = Command::new(compiler)
        .arg(format!("-std={standard}"))
        .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-g", "-O1"])
        .arg("-I")
        .arg(crate_dir().join("../../include"))
        .arg("-I")
        .arg(crate_dir().join("tests/c"))
        .arg(source)
        .arg("-L")
        .arg(&library)
        .arg("-lshmlane_ffi")
        .arg(format!("-Wl,-rpath,{}", library.display()))
        .arg("-o")
        .arg(&executable)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the compiler {compiler:?}: {e}"));
    (executable, output)
}

/// Compiles `tests/c/{name}.c` as C99.
fn test_program(name: &str) -> PathBuf {
    compile(&crate_dir().join(format!("tests/c/{name}.c")), name, "c99")
}

/// The environment of a C program: cargo's `LD_LIBRARY_PATH` (which outranks the programs'
/// rpath) also names `target/debug`, where a `cargo build` may have left an older
/// `libshmlane_ffi.so`; the programs get the one built for this test.
fn library_env() -> (&'static str, String) {
    ("LD_LIBRARY_PATH", library_dir().to_str().expect("a UTF-8 path").to_owned())
}

/// Starts a C program with `args`, through the test kit (reports, stderr, deadlines, killed
/// if the test fails). The kit appends the test binary's own arguments, which the programs
/// ignore.
fn start(program: &Path, args: &[&str]) -> ChildProc {
    let path = program.to_str().expect("a UTF-8 path");
    let mut command = vec![path];
    command.extend_from_slice(args);
    let role = program.file_name().and_then(|n| n.to_str()).unwrap_or("c program");
    let (key, value) = library_env();
    spawn_child_under(&command, role, &[], &[(key, &value)])
}

/// Starts an example program with `args` and its output piped, killed after 60 s (by
/// `timeout`) if it hangs.
fn run(program: &Path, args: &[&str]) -> std::process::Child {
    let (key, value) = library_env();
    Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .env(key, value)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a program under `timeout`")
}

/// Fails unless a program's run succeeded; returns its stdout.
fn succeeded(what: &str, output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A namespace for one test: its tag and this process's pid.
fn namespace(tag: &str) -> String {
    format!("ffi{tag}{}", std::process::id())
}

/// Fails if anything of `namespace` is left in /dev/shm.
fn assert_clean(namespace: &str) {
    let prefix = format!("shmlane.{namespace}.");
    let left: Vec<String> = std::fs::read_dir(SHM_DIR)
        .expect("list /dev/shm")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "left in {SHM_DIR}: {left:?}");
}

#[test]
fn the_rust_type_name_is_the_one_the_c_programs_use() {
    assert_eq!(std::any::type_name::<Tick>(), "c_interop::Tick");
    assert_eq!((size_of::<Tick>(), align_of::<Tick>()), (32, 8));
}

#[test]
fn a_c_publisher_feeds_a_rust_subscriber() {
    let program = test_program("publisher");
    let namespace = namespace("pub");
    {
        let node = Node::builder("rust-subscriber").namespace(&namespace).create().unwrap();
        let topic = node
            .topic::<Tick>("ticks")
            .overflow(Overflow::Block)
            .max_slice_len(SLICE as u32)
            .create()
            .unwrap();
        let subscriber = topic.subscriber().unwrap();
        let mut child = start(&program, &[&namespace, &TICKS.to_string(), &SLICE.to_string()]);
        let mut strategy = Blocking::new();
        for sequence in 0..TICKS {
            let sample =
                subscriber.receive_with(&mut strategy, Some(TIMEOUT)).unwrap_or_else(|e| {
                    panic!("tick {sequence} did not come: {e}; C stderr:\n{}", child.stderr())
                });
            assert_eq!(sample.len(), 1);
            assert_eq!(sample.read(), tick_for(sequence));
        }
        let slice = subscriber.receive_with(&mut strategy, Some(TIMEOUT)).unwrap();
        let expected: Vec<Tick> = (TICKS..TICKS + SLICE as u64).map(tick_for).collect();
        assert_eq!(slice.read_all(), expected);
        drop(slice);
        assert_eq!(child.report_u64("sent", TIMEOUT), TICKS);
        child.expect_success(TIMEOUT);
        assert_eq!(subscriber.drops(), 0);
        assert!(subscriber.receive().unwrap().is_none(), "nothing more was sent");
    }
    assert_clean(&namespace);
}

#[test]
fn a_rust_publisher_feeds_a_c_subscriber() {
    let program = test_program("subscriber");
    let namespace = namespace("sub");
    {
        let node = Node::builder("rust-publisher").namespace(&namespace).create().unwrap();
        let topic = node
            .topic::<Tick>("ticks")
            .overflow(Overflow::Block)
            .max_slice_len(SLICE as u32)
            .create()
            .unwrap();
        let publisher = topic.publisher().unwrap();
        publisher.set_block_timeout(TIMEOUT);
        let mut child = start(&program, &[&namespace, &TICKS.to_string(), &SLICE.to_string()]);
        child.report("ready", TIMEOUT);
        for sequence in 0..TICKS {
            let delivered = if sequence % 2 == 0 {
                let mut loan = publisher.loan().unwrap();
                *loan = tick_for(sequence);
                publisher.send(loan)
            } else {
                publisher.send_copy(tick_for(sequence))
            };
            let delivered = delivered.unwrap_or_else(|e| {
                panic!("tick {sequence} not sent: {e}; C stderr:\n{}", child.stderr())
            });
            assert_eq!(delivered, 1);
        }
        let mut slice = publisher.loan_slice(SLICE).unwrap();
        for (i, tick) in slice.iter_mut().enumerate() {
            *tick = tick_for(TICKS + i as u64);
        }
        publisher.send_slice(slice).unwrap();
        assert_eq!(child.report_u64("received", TIMEOUT), TICKS);
        child.expect_success(TIMEOUT);
    }
    assert_clean(&namespace);
}

#[test]
fn a_type_mismatch_from_c_is_refused_naming_both_types() {
    let program = test_program("mismatch");
    let namespace = namespace("mismatch");
    {
        let node = Node::builder("rust-owner").namespace(&namespace).create().unwrap();
        let _topic = node.topic::<Tick>("ticks").create().unwrap();
        let mut child = start(&program, &[&namespace]);
        let layout = child.report("layout", TIMEOUT);
        assert!(
            layout.contains("c_interop::Tick (32 bytes, align 8, version 0)")
                && layout.contains("c_interop::Tick (24 bytes, align 8, version 0)"),
            "{layout}"
        );
        let version = child.report("version", TIMEOUT);
        assert!(
            version.contains("(32 bytes, align 8, version 0)")
                && version.contains("(32 bytes, align 8, version 1)"),
            "{version}"
        );
        assert_eq!(child.report("adopted", TIMEOUT), "c_interop::Tick 32 8 0");
        child.expect_success(TIMEOUT);
    }
    assert_clean(&namespace);
}

#[test]
fn misuse_from_c_gets_error_codes() {
    let program = test_program("misuse");
    let namespace = namespace("misuse");
    let mut child = start(&program, &[&namespace]);
    let checks = child.report_u64("checks", TIMEOUT);
    child.expect_success(TIMEOUT);
    // The program reports after its last check and exits at the first that fails; the count
    // guards against the checks being cut short (71 when written).
    assert!(checks >= 70, "only {checks} checks ran");
    assert_clean(&namespace);
}

#[test]
fn events_go_both_ways_between_c_and_rust() {
    let program = test_program("events");
    let namespace = namespace("events");
    {
        let node = Node::builder("rust-events").namespace(&namespace).create().unwrap();
        let event = node.event("bell").max_event_id(16).open_or_create().unwrap();
        let listener = event.listener().unwrap();
        let notifier = event.notifier().unwrap();
        let mut child = start(&program, &[&namespace]);
        child.report("ready", TIMEOUT);
        assert_eq!(notifier.notify(5).unwrap(), 2, "our listener and the C one");
        let mut seen = BTreeSet::new();
        while !(seen.contains(&7) && seen.contains(&9)) {
            let ids = listener.wait(&mut Blocking::new(), Some(TIMEOUT)).unwrap_or_else(|e| {
                panic!("no event from C ({e}); seen {seen:?}; C stderr:\n{}", child.stderr())
            });
            seen.extend(ids);
        }
        assert_eq!(seen, BTreeSet::from([5, 7, 9]));
        child.report("notified", TIMEOUT);
        child.expect_success(TIMEOUT);
    }
    assert_clean(&namespace);
}

#[test]
fn a_c_waitset_waits_on_rust_publishers_and_events() {
    let program = test_program("waitset");
    let namespace = namespace("waitset");
    {
        let node = Node::builder("rust-waitset").namespace(&namespace).create().unwrap();
        let topic_a = node.topic::<Tick>("ticks-a").create().unwrap();
        let topic_b = node.topic::<Tick>("ticks-b").create().unwrap();
        let (publisher_a, publisher_b) =
            (topic_a.publisher().unwrap(), topic_b.publisher().unwrap());
        let event = node.event("bell").max_event_id(16).open_or_create().unwrap();
        let notifier = event.notifier().unwrap();
        let mut child = start(&program, &[&namespace]);
        child.report("ready", TIMEOUT);
        assert_eq!(publisher_a.send_copy(tick_for(0)).unwrap(), 1);
        child.report("got-a", TIMEOUT);
        assert_eq!(publisher_b.send_copy(tick_for(1)).unwrap(), 1);
        assert_eq!(notifier.notify(3).unwrap(), 1);
        let checks = child.report_u64("checks", TIMEOUT);
        child.expect_success(TIMEOUT);
        // The count guards against the checks being cut short (at least 34 when written; the
        // waits' loops add more).
        assert!(checks >= 30, "only {checks} checks ran");
    }
    assert_clean(&namespace);
}

#[test]
fn a_cpp_waitset_waits_on_a_rust_publisher_and_client() {
    let program = compile_cpp(&crate_dir().join("tests/cpp/waitset.cpp"), "cpp_waitset");
    let namespace = namespace("cppwaitset");
    {
        let node = Node::builder("rust-waitset").namespace(&namespace).create().unwrap();
        let topic = node.topic::<u64>("ticks").create().unwrap();
        let publisher = topic.publisher().unwrap();
        let rpc = node.rpc::<u64, u64>("doubler").open_or_create().unwrap();
        let client = rpc.client().unwrap();
        let mut child = start(&program, &[&namespace]);
        child.report("ready", TIMEOUT);
        assert_eq!(publisher.send_copy(7).unwrap(), 1);
        let response = client
            .call(20, &mut Blocking::new(), Some(TIMEOUT))
            .unwrap_or_else(|e| panic!("the call failed: {e}; C++ stderr:\n{}", child.stderr()));
        assert_eq!(response.read(), 41);
        let checks = child.report_u64("checks", TIMEOUT);
        child.expect_success(TIMEOUT);
        assert!(checks >= 14, "only {checks} checks ran");
    }
    assert_clean(&namespace);
}

#[test]
fn rpc_goes_both_ways_between_c_and_rust() {
    rpc_both_ways(&test_program("rpc"), "rpc");
}

/// The same calls through shmlane.hpp (`Rpc`, `Server`, `Client`, requests and responses
/// released by their destructors).
#[test]
fn rpc_goes_both_ways_between_cpp_and_rust() {
    let program = compile_cpp(&crate_dir().join("tests/cpp/rpc.cpp"), "cpp_rpc");
    rpc_both_ways(&program, "cpprpc");
}

/// A server `program` answering a Rust client, then a client `program` calling a Rust server.
fn rpc_both_ways(program: &Path, tag: &str) {
    const CALLS: u64 = 50;

    // A C server, a Rust client.
    let namespace_a = namespace(&format!("{tag}server"));
    {
        let node = Node::builder("rust-client").namespace(&namespace_a).create().unwrap();
        let rpc = node.rpc::<u64, u64>("doubler").open_or_create().unwrap();
        let mut child = start(program, &["server", &namespace_a, &CALLS.to_string()]);
        child.report("ready", TIMEOUT);
        let client = rpc.client().unwrap();
        for x in 0..CALLS {
            let response = client
                .call(x, &mut Blocking::new(), Some(TIMEOUT))
                .unwrap_or_else(|e| panic!("call {x} failed: {e}; C stderr:\n{}", child.stderr()));
            assert_eq!(response.read(), 2 * x + 1);
        }
        child.expect_success(TIMEOUT);
    }
    assert_clean(&namespace_a);

    // A Rust server, a C client.
    let namespace_b = namespace(&format!("{tag}client"));
    {
        let node = Node::builder("rust-server").namespace(&namespace_b).create().unwrap();
        let rpc = node.rpc::<u64, u64>("doubler").open_or_create().unwrap();
        let server = rpc.server().unwrap();
        let serving = std::thread::spawn(move || {
            for _ in 0..CALLS {
                let request = server.receive_with(&mut Blocking::new(), Some(TIMEOUT))?;
                let x = request.read();
                server.respond(&request, 2 * x + 1)?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
        let mut child = start(program, &["client", &namespace_b, &CALLS.to_string()]);
        assert_eq!(child.report_u64("answered", TIMEOUT), CALLS);
        child.expect_success(TIMEOUT);
        serving.join().expect("the server thread panicked").expect("the server failed");
    }
    assert_clean(&namespace_b);
}

#[test]
fn the_c_example_says_hello() {
    let program = compile(&crate_dir().join("examples/c/hello.c"), "hello", "c11");
    let namespace = namespace("hello");
    let subscriber = run(&program, &["sub", &namespace]);
    let publisher = run(&program, &["pub", &namespace]).wait_with_output().expect("its output");
    let subscriber = subscriber.wait_with_output().expect("the subscriber's output");
    assert_eq!(succeeded("hello pub", &publisher), "sent 10 greetings\n");
    let received = succeeded("hello sub", &subscriber);
    let expected: String = (0..10).map(|n| format!("{n}: hello from C, number {n}\n")).collect();
    assert_eq!(received, expected);
    assert_clean(&namespace);
}

#[test]
fn the_cpp_header_wraps_the_abi() {
    let program = compile_cpp(&crate_dir().join("tests/cpp/checks.cpp"), "cpp_checks");
    let namespace = namespace("cppchecks");
    let output = run(&program, &[&namespace]).wait_with_output().expect("its output");
    let said = succeeded("tests/cpp/checks.cpp", &output);
    let passed: u32 = said
        .trim()
        .strip_prefix("cpp checks passed ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {said:?}"));
    // It prints after its last check and exits at the first that fails (20 when written).
    assert!(passed >= 20, "only {passed} checks ran");
    assert_clean(&namespace);
}

#[test]
fn a_cpp_topic_refuses_a_type_that_is_not_trivially_copyable() {
    let source = crate_dir().join("tests/cpp/not_a_payload.cpp");
    let (_, output) = compile_cpp_output(&source, "not_a_payload");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "Topic<std::string> compiled");
    assert!(said.contains("a shmlane payload is trivially copyable"), "{said}");
}

/// Sample `i` of audio block `n` (as `sample_value` in examples/cpp/audio_blocks.cpp).
fn audio_sample(n: u64, i: usize) -> f32 {
    if i == 0 { n as f32 } else { ((n * 512 + i as u64) % 1000) as f32 * 0.001 }
}

#[test]
fn audio_blocks_go_both_ways_between_cpp_and_rust() {
    const BLOCKS: u64 = 200;
    const BLOCK_LEN: usize = 512;
    let program = compile_cpp(&crate_dir().join("examples/cpp/audio_blocks.cpp"), "audio_blocks");
    let blocks = BLOCKS.to_string();

    // Rust produces, the C++ example consumes.
    let namespace_a = namespace("cppconsumer");
    {
        let node = Node::builder("rust-producer").namespace(&namespace_a).create().unwrap();
        let topic = node
            .topic::<f32>("audio")
            .max_publishers(1)
            .max_slice_len(BLOCK_LEN as u32)
            .subscriber_capacity(16)
            .overflow(Overflow::Block)
            .create()
            .unwrap();
        let publisher = topic.publisher().unwrap();
        publisher.set_block_timeout(TIMEOUT);
        let consumer = run(&program, &["consumer", &namespace_a, &blocks]);
        let deadline = std::time::Instant::now() + TIMEOUT;
        while publisher.subscribers() == 0 {
            assert!(std::time::Instant::now() < deadline, "the C++ consumer did not subscribe");
            std::thread::sleep(Duration::from_millis(5));
        }
        for n in 0..BLOCKS {
            let mut block = publisher.loan_slice(BLOCK_LEN).unwrap();
            for (i, sample) in block.iter_mut().enumerate() {
                *sample = audio_sample(n, i);
            }
            publisher.send_slice(block).unwrap();
        }
        let said = succeeded("audio_blocks consumer", &consumer.wait_with_output().unwrap());
        assert!(said.starts_with(&format!("consumed {BLOCKS} blocks, 0 dropped")), "{said}");
    }
    assert_clean(&namespace_a);

    // The C++ example produces, Rust consumes.
    let namespace_b = namespace("cppproducer");
    {
        let node = Node::builder("rust-consumer").namespace(&namespace_b).create().unwrap();
        let topic = node
            .topic::<f32>("audio")
            .max_publishers(1)
            .max_slice_len(BLOCK_LEN as u32)
            .subscriber_capacity(16)
            .overflow(Overflow::Block)
            .create()
            .unwrap();
        let subscriber = topic.subscriber().unwrap();
        let producer = run(&program, &["producer", &namespace_b, &blocks]);
        for n in 0..BLOCKS {
            let block = subscriber.receive_with(&mut Blocking::new(), Some(TIMEOUT)).unwrap();
            let expected: Vec<f32> = (0..BLOCK_LEN).map(|i| audio_sample(n, i)).collect();
            assert_eq!(block.as_slice(), expected.as_slice(), "block {n}");
        }
        assert_eq!(subscriber.drops(), 0);
        // The producer stays until its subscriber leaves.
        drop(subscriber);
        let said = succeeded("audio_blocks producer", &producer.wait_with_output().unwrap());
        assert_eq!(said, format!("sent {BLOCKS} blocks\n"));
    }
    assert_clean(&namespace_b);
}
