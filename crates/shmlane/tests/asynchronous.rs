//! async/await between real processes, on tokio (current-thread runtime, `LocalSet`: the
//! sources are `!Sync`): one task per topic awaiting 100 topics fed by another process, with
//! an rpc awaited meanwhile; futures cancelled by timeouts and `select!` losing nothing; an
//! event awaited; and pending futures costing no CPU while nothing comes.

use std::time::Duration;

use shmlane::{Node, Overflow};
use shmlane_testkit::{
    child_spec, exit_child, fail, process_lock, report, spawn_child, split_spec,
};

const TIMEOUT: Duration = Duration::from_secs(60);

fn node(tag: &str) -> Node {
    let namespace = format!("a{}{tag}", std::process::id());
    Node::builder("test").namespace(namespace).create().unwrap()
}

fn local_runtime() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    (runtime, tokio::task::LocalSet::new())
}

#[test]
fn child_entry() {
    let Some(spec) = child_spec() else { return };
    let (role, args) = split_spec(&spec);
    match (role, args.as_slice()) {
        ("publish", [namespace, topics, count]) => {
            publish(namespace, topics.parse().unwrap(), count.parse().unwrap())
        }
        _ => fail(2, format!("unknown role {spec}")),
    }
    exit_child()
}

/// Publishes `count` samples to each of topics `t0..t{topics}`, round robin, each sample
/// `topic << 32 | sequence`; serves `double` (rpc) until every sample is sent.
fn publish(namespace: &str, topics: u64, count: u64) {
    let node = Node::builder("pub").namespace(namespace).create().unwrap();
    let publishers: Vec<_> = (0..topics)
        .map(|t| node.topic::<u64>(&format!("t{t}")).open().unwrap().publisher().unwrap())
        .collect();
    for publisher in &publishers {
        shmlane_testkit::wait_for("the subscriber", TIMEOUT, || publisher.subscribers() == 1);
        publisher.set_block_timeout(TIMEOUT);
    }
    for sequence in 0..count {
        for (t, publisher) in publishers.iter().enumerate() {
            publisher.send_copy((t as u64) << 32 | sequence).unwrap();
        }
    }
    report("sent", topics * count);
}

#[test]
fn tasks_await_100_topics_of_another_process_and_an_rpc_at_once() {
    const TOPICS: u64 = 100;
    const COUNT: u64 = 300;
    let _serial = process_lock();
    let node = node("hundred");
    let topics: Vec<_> = (0..TOPICS)
        .map(|t| node.topic::<u64>(&format!("t{t}")).overflow(Overflow::Block).create().unwrap())
        .collect();
    let rpc = node.rpc::<u64, u64>("double").open_or_create().unwrap();
    let client = rpc.client().unwrap();
    let server = rpc.server().unwrap();
    let serving = std::thread::spawn(move || {
        for _ in 0..50 {
            let request = server.receive_with(&mut shmlane::notify::Blocking::new(), Some(TIMEOUT));
            let request = request.unwrap();
            server.respond(&request, *request * 2).unwrap();
        }
    });
    let (runtime, local) = local_runtime();
    let subscribers: Vec<_> = topics.iter().map(|t| t.subscriber().unwrap()).collect();
    let mut child =
        spawn_child("publish", &[node.namespace(), &TOPICS.to_string(), &COUNT.to_string()]);
    local.block_on(&runtime, async {
        let mut tasks = Vec::new();
        for (t, subscriber) in subscribers.into_iter().enumerate() {
            tasks.push(tokio::task::spawn_local(async move {
                for sequence in 0..COUNT {
                    let sample = subscriber.receive_async().await.unwrap();
                    assert_eq!(*sample, (t as u64) << 32 | sequence, "topic {t}");
                }
            }));
        }
        for n in 0..50u64 {
            let response = tokio::time::timeout(TIMEOUT, client.call_async(n)).await;
            assert_eq!(*response.expect("answered in time").unwrap(), n * 2);
        }
        for task in tasks {
            tokio::time::timeout(TIMEOUT, task).await.expect("every sample in time").unwrap();
        }
    });
    assert_eq!(child.report_u64("sent", TIMEOUT), TOPICS * COUNT);
    child.expect_success(TIMEOUT);
    serving.join().unwrap();
}

#[test]
fn cancelled_futures_lose_nothing() {
    let node = node("cancel");
    // The block policy: a sender faster than the receiver waits, so any gap is a loss.
    let topic = |name| node.topic::<u64>(name).overflow(Overflow::Block).create().unwrap();
    let (a, b) = (topic("a"), topic("b"));
    let (sub_a, sub_b) = (a.subscriber().unwrap(), b.subscriber().unwrap());
    let (pub_a, pub_b) = (a.publisher().unwrap(), b.publisher().unwrap());
    pub_a.set_block_timeout(TIMEOUT);
    pub_b.set_block_timeout(TIMEOUT);
    let (runtime, local) = local_runtime();
    local.block_on(&runtime, async {
        // Cancelled by a timeout while pending, many times over: nothing was there to lose.
        for _ in 0..100 {
            let idle = tokio::time::timeout(Duration::from_micros(100), sub_a.receive_async());
            assert!(idle.await.is_err());
        }
        for value in 1..=3 {
            pub_a.send_copy(value).unwrap();
        }
        for value in 1..=3 {
            assert_eq!(*sub_a.receive_async().await.unwrap(), value);
        }
        // select! drops the losing future every time: every sample of both topics still comes,
        // in order.
        let sender = std::thread::spawn(move || {
            for value in 0..2000u64 {
                pub_a.send_copy(value).unwrap();
                pub_b.send_copy(value).unwrap();
                if value % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let (mut next_a, mut next_b) = (0, 0);
        while next_a < 2000 || next_b < 2000 {
            tokio::select! {
                sample = sub_a.receive_async(), if next_a < 2000 => {
                    assert_eq!(*sample.unwrap(), next_a);
                    next_a += 1;
                }
                sample = sub_b.receive_async(), if next_b < 2000 => {
                    assert_eq!(*sample.unwrap(), next_b);
                    next_b += 1;
                }
            }
        }
        sender.join().unwrap();
    });
}

#[test]
fn an_event_is_awaited_and_idle_futures_cost_no_cpu() {
    let node = node("idle");
    let event = node.event("bell").open_or_create().unwrap();
    let listener = event.listener().unwrap();
    let topics: Vec<_> =
        (0..10).map(|t| node.topic::<u64>(&format!("q{t}")).create().unwrap()).collect();
    let subscribers: Vec<_> = topics.iter().map(|t| t.subscriber().unwrap()).collect();
    let (runtime, local) = local_runtime();
    local.block_on(&runtime, async {
        // A thousand futures pending on ten quiet topics for 300 ms: the reactor sleeps.
        let before = cpu_time();
        let pending: Vec<_> = (0..1000)
            .map(|i| {
                let subscriber = &subscribers[i % 10];
                tokio::time::timeout(Duration::from_millis(300), subscriber.receive_async())
            })
            .collect();
        for idle in futures_join(pending).await {
            assert!(idle.is_err(), "nothing was sent");
        }
        let used = cpu_time() - before;
        assert!(used < Duration::from_millis(100), "{used:?} of CPU in 300 ms of waiting");

        let notifier = event.notifier().unwrap();
        let ring = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            notifier.notify(7).unwrap();
        });
        let ids = tokio::time::timeout(TIMEOUT, listener.wait_async()).await.unwrap().unwrap();
        assert_eq!(ids, [7]);
        ring.join().unwrap();
    });
}

/// Awaits every future of `futures`, concurrently, on this task.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future completed")).collect()
}

/// CPU time (user + system) of this thread and of the reactor thread so far (other tests
/// run in this process at the same time: theirs is not counted).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `getrusage` writes a whole `rusage` to a pointer valid for one; RUSAGE_THREAD is
    // valid, so it returns 0.
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let this = Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime));
    this + reactor_cpu_time()
}

/// CPU time of the thread named `shmlane-reactor`, from /proc (clock ticks of 10 ms).
fn reactor_cpu_time() -> Duration {
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "shmlane-reactor" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
        // Fields after the command's closing parenthesis: utime and stime are the 12th and
        // 13th of them.
        let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
            .split(' ')
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // SAFETY: sysconf with a valid name has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        return Duration::from_millis((fields[11] + fields[12]) * 1000 / ticks);
    }
    Duration::ZERO
}
