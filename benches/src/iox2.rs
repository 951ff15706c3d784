//! iceoryx2 publish/subscribe as a ping-pong [`Link`] (feature `iceoryx2`), measured like
//! shmlane's: a service per direction and payload size, one publisher and one subscriber per
//! process, the sample loaned (`loan_uninit` / `loan_slice_uninit`), its first word written in
//! place, sent; `receive` busy polled, the first word read in place.
//!
//! Service settings are iceoryx2's defaults except the subscriber buffer, set to shmlane's
//! subscriber capacity ([`SHMLANE_CAPACITY`]); iceoryx2's defaults for borrowed and loaned
//! samples already equal shmlane's `max_held` and `max_loans`. [`Iox2Files`] keeps every file
//! of a run apart (its own prefix in /dev/shm, its own root directory instead of
//! /tmp/iceoryx2), so the run can remove exactly what it created. [`Iox2Stream`] is the
//! one-way service of the `throughput` bench.

use std::path::PathBuf;

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as Service;
use iceoryx2::service::static_config::publish_subscribe::StaticConfig;

use crate::pingpong::{
    DIRECTIONS, Link, Rounds, SHMLANE_CAPACITY, Side, remove_entries, spin_until,
};
use crate::stream::{BY_COPY_MAX, STREAM_CAPACITY};

/// The iceoryx2 version this package depends on (keep in step with `Cargo.toml`).
pub const VERSION: &str = "0.10";

/// Where one run's iceoryx2 files go.
#[derive(Debug, Clone)]
pub struct Iox2Files {
    /// Prefix of every shared-memory file of the run (in /dev/shm).
    pub prefix: String,
    /// The run's root directory (nodes and services), in place of /tmp/iceoryx2.
    pub root: PathBuf,
}

impl Iox2Files {
    /// The files of run `run` (the initiator's pid, say).
    pub fn for_run(run: &str) -> Iox2Files {
        Iox2Files {
            prefix: format!("iox2_shmlane_bench_{run}_"),
            root: std::env::temp_dir().join(format!("iceoryx2_shmlane_bench_{run}")),
        }
    }

    /// A node with iceoryx2's default configuration except the file prefix and root, and no
    /// signal handler of its own (the bench's [`stop_on_signals`](crate::pingpong::stop_on_signals)
    /// handles Ctrl-C, so that a stopped run still removes its files).
    pub fn node(&self) -> Node<ipc::Service> {
        let mut config = Config::default();
        config.global.prefix = FileName::new(self.prefix.as_bytes()).expect("iceoryx2 prefix");
        let root = format!("{}/", self.root.display());
        config.global.set_root_path(&Path::new(root.as_bytes()).expect("iceoryx2 root path"));
        NodeBuilder::new()
            .config(&config)
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .expect("iceoryx2 node")
    }

    /// Removes whatever of the run is left (the shared-memory files with its prefix, its root
    /// directory); returns what it found.
    pub fn remove_leftovers(&self) -> Vec<PathBuf> {
        let mut found =
            remove_entries(std::path::Path::new("/dev/shm"), |name| name.starts_with(&self.prefix));
        if self.root.exists() {
            let _ = std::fs::remove_dir_all(&self.root);
            found.push(self.root.clone());
        }
        found
    }
}

/// The two services (ping, pong) of one payload size.
#[derive(Debug)]
pub enum Iox2Topics {
    /// 8 bytes: a `u64` sample.
    Word([Service<ipc::Service, u64, ()>; 2]),
    /// More: a `[u64]` slice of this many words.
    Slice([Service<ipc::Service, [u64], ()>; 2], usize),
}

impl Iox2Topics {
    /// Creates (initiator) or opens (echo) the services `{prefix}/{size}-ping` and `-pong` for
    /// `payload`-byte messages (a multiple of 8). `blocking`: safe overflow off, so a full
    /// buffer makes the publisher retry (its default backpressure, `RetryUntilDelivered`), as
    /// shmlane's `Overflow::Block`; otherwise iceoryx2's default, safe overflow (the oldest
    /// sample is dropped).
    pub fn new(
        node: &Node<ipc::Service>,
        prefix: &str,
        payload: usize,
        blocking: bool,
        side: Side,
    ) -> Self {
        assert!(payload >= 8 && payload.is_multiple_of(8), "payload {payload} not whole words");
        let policy = if blocking { "-block" } else { "" };
        let name = |direction: &str| {
            let name = format!("{prefix}/{payload}{policy}-{direction}");
            ServiceName::new(&name).unwrap_or_else(|e| panic!("service name {name}: {e:?}"))
        };
        macro_rules! open {
            ($payload:ty, $direction:expr) => {{
                let builder =
                    node.service_builder(&name($direction)).publish_subscribe::<$payload>();
                let service = match side {
                    Side::Initiator => builder
                        .subscriber_max_buffer_size(SHMLANE_CAPACITY as usize)
                        .enable_safe_overflow(!blocking)
                        .create()
                        .map_err(|e| format!("{e:?}")),
                    Side::Echo => builder.open().map_err(|e| format!("{e:?}")),
                };
                service.unwrap_or_else(|e| panic!("iceoryx2 service {}: {e}", $direction))
            }};
        }
        if payload == 8 {
            Iox2Topics::Word([open!(u64, DIRECTIONS[0]), open!(u64, DIRECTIONS[1])])
        } else {
            Iox2Topics::Slice(
                [open!([u64], DIRECTIONS[0]), open!([u64], DIRECTIONS[1])],
                payload / 8,
            )
        }
    }

    /// `side`'s end: it publishes on its outbound service and subscribes to its inbound one.
    pub fn link(&self, side: Side) -> Box<dyn Rounds + '_> {
        let (out, inb) = (side.outbound(), side.inbound());
        match self {
            Iox2Topics::Word(services) => Box::new(Iox2Word {
                publisher: services[out].publisher_builder().create().expect("iceoryx2 publisher"),
                subscriber: services[inb]
                    .subscriber_builder()
                    .create()
                    .expect("iceoryx2 subscriber"),
                outbound: &services[out],
            }),
            Iox2Topics::Slice(services, words) => Box::new(Iox2Slice {
                publisher: services[out]
                    .publisher_builder()
                    .initial_max_slice_len(*words)
                    .create()
                    .expect("iceoryx2 publisher"),
                subscriber: services[inb]
                    .subscriber_builder()
                    .create()
                    .expect("iceoryx2 subscriber"),
                outbound: &services[out],
                words: *words,
            }),
        }
    }

    /// The settings in force, as the service reports them.
    pub fn settings(&self) -> String {
        let config = match self {
            Iox2Topics::Word(services) => services[0].static_config(),
            Iox2Topics::Slice(services, _) => services[0].static_config(),
        };
        describe(config)
    }
}

/// A publish-subscribe service's settings in force, for the report.
fn describe(config: &StaticConfig) -> String {
    format!(
        "max_publishers {}, max_subscribers {}, subscriber_max_buffer_size {}, \
         subscriber_max_borrowed_samples {}, history_size {}, safe_overflow {}",
        config.max_publishers(),
        config.max_subscribers(),
        config.subscriber_max_buffer_size(),
        config.subscriber_max_borrowed_samples(),
        config.history_size(),
        config.has_safe_overflow()
    )
}

/// One process's end for 8-byte messages: `loan_uninit`, the `u64` written in place
/// (`write_payload`), `send`; `receive` busy polled, the value read through the sample.
#[derive(Debug)]
struct Iox2Word<'s> {
    publisher: Publisher<ipc::Service, u64, ()>,
    subscriber: Subscriber<ipc::Service, u64, ()>,
    outbound: &'s Service<ipc::Service, u64, ()>,
}

impl Link for Iox2Word<'_> {
    #[inline(always)]
    fn send(&mut self, seq: u64) {
        let sample = self.publisher.loan_uninit().expect("iceoryx2 loan").write_payload(seq);
        let delivered = sample.send().expect("iceoryx2 send");
        assert_eq!(delivered, 1, "iceoryx2 message {seq} reached no subscriber");
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) {
        let got = spin_until("an iceoryx2 sample", || {
            self.subscriber.receive().expect("iceoryx2 receive").map(|sample| *sample.payload())
        });
        assert_eq!(got, seq, "iceoryx2 messages lost or reordered");
    }

    fn peer_attached(&self) -> bool {
        self.outbound.dynamic_config().number_of_subscribers() == 1
    }
}

/// One process's end for larger messages: `loan_slice_uninit` of the whole payload, its first
/// word written in place (nothing else), `assume_init`, `send`; `receive` busy polled, the
/// first word read in place.
#[derive(Debug)]
struct Iox2Slice<'s> {
    publisher: Publisher<ipc::Service, [u64], ()>,
    subscriber: Subscriber<ipc::Service, [u64], ()>,
    outbound: &'s Service<ipc::Service, [u64], ()>,
    words: usize,
}

impl Link for Iox2Slice<'_> {
    #[inline(always)]
    fn send(&mut self, seq: u64) {
        let mut sample = self.publisher.loan_slice_uninit(self.words).expect("iceoryx2 loan");
        sample.payload_mut()[0].write(seq);
        // SAFETY: the slice lies in a shared-memory mapping, whose bytes are always
        // initialized memory (zero-filled pages, or what an earlier sample left there), so
        // every `u64` of it holds a valid value: `MaybeUninit` only says the values are
        // unspecified. Only the first word, just written, is read by anyone. (iceoryx2's own
        // publish-subscribe benchmark sends `loan_slice_uninit(..).assume_init()` the same way.)
        let sample = unsafe { sample.assume_init() };
        let delivered = sample.send().expect("iceoryx2 send");
        assert_eq!(delivered, 1, "iceoryx2 message {seq} reached no subscriber");
    }

    #[inline(always)]
    fn receive(&mut self, seq: u64) {
        let got = spin_until("an iceoryx2 sample", || {
            self.subscriber.receive().expect("iceoryx2 receive").map(|sample| sample.payload()[0])
        });
        assert_eq!(got, seq, "iceoryx2 messages lost or reordered");
    }

    fn peer_attached(&self) -> bool {
        self.outbound.dynamic_config().number_of_subscribers() == 1
    }
}

/// The throughput bench's iceoryx2 service of one payload size, `{prefix}/{size}-stream`, of
/// a `[u64; W]` per size (the sequence number in the first word): one publisher (the
/// initiator), one subscriber (the peer). Settings: `subscriber_max_buffer_size` =
/// [`STREAM_CAPACITY`], `enable_safe_overflow(false)` and the publisher's
/// `BackpressureStrategy::RetryUntilDelivered` (so a full buffer makes the publisher wait
/// instead of dropping the oldest sample), `max_publishers` 1 and `max_subscribers` 1 (as
/// shmlane's topic, and so the preallocated payload memory is shmlane's); iceoryx2's defaults
/// otherwise.
#[derive(Debug)]
pub enum Iox2Stream {
    /// 8 bytes.
    B8(Service<ipc::Service, [u64; 1], ()>),
    /// 64 bytes.
    B64(Service<ipc::Service, [u64; 8], ()>),
    /// 1 KiB.
    K1(Service<ipc::Service, [u64; 128], ()>),
    /// 64 KiB.
    K64(Service<ipc::Service, [u64; 8192], ()>),
}

impl Iox2Stream {
    /// Creates (initiator) or opens (peer) the service of `prefix` for `payload`-byte messages
    /// (one of the bench's sizes).
    pub fn new(node: &Node<ipc::Service>, prefix: &str, payload: usize, side: Side) -> Self {
        fn open<const W: usize>(
            node: &Node<ipc::Service>,
            name: &str,
            side: Side,
        ) -> Service<ipc::Service, [u64; W], ()> {
            let service_name =
                ServiceName::new(name).unwrap_or_else(|e| panic!("service name {name}: {e:?}"));
            let builder = node.service_builder(&service_name).publish_subscribe::<[u64; W]>();
            match side {
                Side::Initiator => builder
                    .max_publishers(1)
                    .max_subscribers(1)
                    .subscriber_max_buffer_size(STREAM_CAPACITY as usize)
                    .enable_safe_overflow(false)
                    .create()
                    .map_err(|e| format!("{e:?}")),
                Side::Echo => builder.open().map_err(|e| format!("{e:?}")),
            }
            .unwrap_or_else(|e| panic!("iceoryx2 service {name}: {e}"))
        }
        let name = format!("{prefix}/{payload}-stream");
        match payload {
            8 => Iox2Stream::B8(open(node, &name, side)),
            64 => Iox2Stream::B64(open(node, &name, side)),
            1024 => Iox2Stream::K1(open(node, &name, side)),
            65536 => Iox2Stream::K64(open(node, &name, side)),
            _ => panic!("no iceoryx2 payload type of {payload} bytes"),
        }
    }

    /// `side`'s end: the initiator publishes, the peer subscribes.
    pub fn end(&self, side: Side) -> Box<dyn Rounds + '_> {
        fn end<const W: usize>(
            service: &Service<ipc::Service, [u64; W], ()>,
            side: Side,
        ) -> Box<dyn Rounds + '_> {
            match side {
                Side::Initiator => Box::new(Iox2End::Publisher(
                    service
                        .publisher_builder()
                        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                        .create()
                        .expect("iceoryx2 publisher"),
                    service,
                )),
                Side::Echo => Box::new(Iox2End::Subscriber(
                    service.subscriber_builder().create().expect("iceoryx2 subscriber"),
                )),
            }
        }
        match self {
            Iox2Stream::B8(service) => end(service, side),
            Iox2Stream::B64(service) => end(service, side),
            Iox2Stream::K1(service) => end(service, side),
            Iox2Stream::K64(service) => end(service, side),
        }
    }

    /// The settings in force, as the service reports them.
    pub fn settings(&self) -> String {
        let config = match self {
            Iox2Stream::B8(service) => service.static_config(),
            Iox2Stream::B64(service) => service.static_config(),
            Iox2Stream::K1(service) => service.static_config(),
            Iox2Stream::K64(service) => service.static_config(),
        };
        describe(config)
    }
}

/// One process's end of an iceoryx2 stream (the publisher with its service, to see the
/// subscriber join).
#[derive(Debug)]
enum Iox2End<'s, const W: usize> {
    Publisher(Publisher<ipc::Service, [u64; W], ()>, &'s Service<ipc::Service, [u64; W], ()>),
    Subscriber(Subscriber<ipc::Service, [u64; W], ()>),
}

impl<const W: usize> Link for Iox2End<'_, W> {
    /// Up to [`BY_COPY_MAX`] bytes, `loan_uninit` and the whole value written
    /// (`write_payload`); larger, `loan_uninit` with only the sequence number written in
    /// place. Then `send`, which waits while the subscriber's buffer is full.
    #[inline(always)]
    fn send(&mut self, seq: u64) {
        let Iox2End::Publisher(publisher, _) = self else { panic!("a subscriber does not send") };
        let mut sample = publisher.loan_uninit().expect("iceoryx2 loan");
        let sample = if W * 8 <= BY_COPY_MAX {
            let mut value = [0; W];
            value[0] = seq;
            sample.write_payload(value)
        } else {
            let first = sample.payload_mut().as_mut_ptr().cast::<u64>();
            // SAFETY: `first` points to the first `u64` of the sample's `[u64; W]` (W ≥ 1),
            // which is aligned and valid for writes: it is the sample we hold mutably.
            unsafe { first.write(seq) };
            // SAFETY: the sample lies in a shared-memory mapping, whose bytes are always
            // initialized memory (zero-filled pages, or what an earlier sample left there), and
            // every bit pattern is a valid `[u64; W]`: `MaybeUninit` only says the values are
            // unspecified. Only the first word, just written, is read by anyone (as
            // `Iox2Slice::send` does with `loan_slice_uninit`).
            unsafe { sample.assume_init() }
        };
        let delivered = sample.send().expect("iceoryx2 send");
        assert_eq!(delivered, 1, "iceoryx2 message {seq} reached no subscriber");
    }

    /// Busy-polled `receive`, the first word read in place.
    #[inline(always)]
    fn receive(&mut self, seq: u64) {
        let Iox2End::Subscriber(subscriber) = self else { panic!("a publisher does not receive") };
        let got = spin_until("an iceoryx2 sample", || {
            subscriber.receive().expect("iceoryx2 receive").map(|sample| sample.payload()[0])
        });
        assert_eq!(got, seq, "iceoryx2 messages lost or reordered");
    }

    fn peer_attached(&self) -> bool {
        match self {
            Iox2End::Publisher(_, service) => service.dynamic_config().number_of_subscribers() == 1,
            Iox2End::Subscriber(_) => true,
        }
    }
}
