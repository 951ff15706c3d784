//! `shmlane inspect NAME`: one segment in detail: its header, and for a topic its settings,
//! pools, queue fill levels, drops and peers.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use shmlane::discovery::{
    self, InspectError, Inspection, PoolDetail, SegmentKind, ServiceKind, TopicDetail, Verdict,
};
use shmlane_segment::header::{MAGIC, RawHeader};
use shmlane_segment::{NAME_PREFIX, ProcessId, SegmentName};

use super::{OpsError, Scope, exit_codes, finish, show};

/// `shmlane inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_long_help = concat!(
        "Show one segment in detail: its header (magic, format, size, creator, \
                  creation time, init state, layout fingerprint), its state and peers with \
                  liveness; for a topic also its settings, each publisher's payload pools with \
                  the blocks its queues hold, and each subscriber's queue fill level and drops.\n\n\
                  Pool use counts the blocks queued for subscribers or handed back and not yet \
                  collected: blocks on loan, kept for the history or in a subscriber's hands are \
                  known only to their own process, so it is a lower bound.",
        "\n\n",
        exit_codes!()
    ),
    after_help = exit_codes!()
)]
pub struct InspectArgs {
    /// A segment name as `shmlane list` shows it (`app.topic.ticks`), its file name
    /// (`shmlane.app.topic.ticks`), or a service name (`ticks`; with --namespace to choose
    /// among namespaces; an rpc service has two topics, `NAME.req` and `NAME.resp`)
    name: String,
    #[command(flatten)]
    scope: Scope,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

/// Runs `shmlane inspect`.
pub fn inspect(args: InspectArgs) -> ExitCode {
    finish(run(&args))
}

fn run(args: &InspectArgs) -> Result<(), OpsError> {
    let name = resolve(&args.scope, &args.name)?;
    let inspection = match discovery::inspect(args.scope.root(), &name) {
        Ok(inspection) => inspection,
        // Removed since we resolved the name.
        Err(InspectError::NotFound { .. }) => return Err(not_found(&args.scope, &args.name)),
        Err(e) => return Err(e.into()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&inspection)).unwrap_or_default());
    } else {
        print!("{}", text(&inspection));
    }
    let problems = inspection.topic.iter().flat_map(|t| &t.problems);
    let name = name.to_string();
    match &inspection.entry.verdict {
        Verdict::Corrupt { reason } => Err(OpsError::Corrupt { name, reason: reason.clone() }),
        Verdict::Unreadable { reason } => {
            Err(OpsError::Unreadable { name, reason: reason.clone() })
        }
        _ => match problems.cloned().collect::<Vec<_>>() {
            problems if problems.is_empty() => Ok(()),
            problems => Err(OpsError::Corrupt { name, reason: problems.join("; ") }),
        },
    }
}

fn not_found(scope: &Scope, name: &str) -> OpsError {
    OpsError::NotFound { name: name.to_owned(), dir: scope.dir().to_owned() }
}

/// The segment `name` means: a segment name, a file name, or a service name.
fn resolve(scope: &Scope, name: &str) -> Result<SegmentName, OpsError> {
    let exists = |n: &SegmentName| scope.dir().join(n.file_name()).symlink_metadata().is_ok();
    let direct = [Some(name), name.strip_prefix(NAME_PREFIX)]
        .into_iter()
        .flatten()
        .filter_map(|n| SegmentName::new(n).ok())
        .find(exists);
    if let Some(found) = direct {
        return Ok(found);
    }
    let found: Vec<SegmentName> = discovery::segments(scope.root())?
        .into_iter()
        .filter(|entry| scope.selects(entry))
        .filter(|entry| {
            entry.service.as_ref().is_some_and(|service| {
                let base = service.name.strip_suffix(".req").or(service.name.strip_suffix(".resp"));
                service.name == name || base == Some(name)
            })
        })
        .map(|entry| entry.segment.name)
        .collect();
    match found.as_slice() {
        [] => Err(not_found(scope, name)),
        [one] => Ok(one.clone()),
        _ => Err(OpsError::Ambiguous {
            name: name.to_owned(),
            found: found.iter().map(ToString::to_string).collect(),
        }),
    }
}

fn backing(code: u32) -> String {
    match code {
        1 => "POSIX shm".into(),
        2 => "file in a directory".into(),
        3 => "memfd".into(),
        other => format!("unknown ({other})"),
    }
}

fn init_state(raw: u32) -> String {
    match raw {
        0 => "empty".into(),
        1 => "initializing".into(),
        2 => "ready".into(),
        other => format!("unknown ({other})"),
    }
}

fn magic(header: &RawHeader) -> String {
    header.magic.escape_ascii().to_string()
}

fn creator(header: &RawHeader) -> ProcessId {
    header.creator()
}

fn created(header: &RawHeader) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(header.created_unix_ns)
}

fn text(inspection: &Inspection) -> String {
    let entry = &inspection.entry;
    let mut out = String::new();
    field(&mut out, "segment", entry.segment.name.to_string());
    field(&mut out, "file", entry.segment.path.display().to_string());
    let kind = show::kind(&entry.kind);
    let what = match (&entry.service, &entry.node) {
        (Some(service), _) => {
            format!("{kind} {:?} in namespace {:?}", service.name, service.namespace)
        }
        (_, Some(node)) => format!("node {:?} in namespace {:?}", node.name, node.namespace),
        _ => kind.to_owned(),
    };
    field(&mut out, "kind", what);
    let (state, reason) = show::verdict(&entry.verdict);
    field(&mut out, "state", reason.map_or(state.to_owned(), |r| format!("{state}: {r}")));
    field(
        &mut out,
        "size",
        format!("{} ({} bytes)", show::size(entry.segment.size), entry.segment.size),
    );
    if let Some(header) = inspection.header.as_ref().filter(|h| h.magic != MAGIC) {
        let value = format!("magic \"{}\": not a shmlane header", magic(header));
        field(&mut out, "header", value);
    } else if let Some(header) = &inspection.header {
        field(
            &mut out,
            "header",
            format!(
                "magic \"{}\", format {}, header {} B, total {} B, backing {}, init {}",
                magic(header),
                header.format_version,
                header.header_size,
                header.total_size,
                backing(header.backing),
                init_state(header.init_state)
            ),
        );
        let creator = creator(header);
        field(
            &mut out,
            "creator",
            format!(
                "pid {} ({}), started at tick {}, presence {:016x}",
                creator.pid,
                show::liveness(header.creator_liveness()),
                creator.start_time,
                header.creator_token
            ),
        );
        let created = created(header);
        let ago = SystemTime::now()
            .duration_since(created)
            .map_or("in the future".into(), |a| format!("{} ago", show::age(a)));
        field(
            &mut out,
            "created",
            format!("{:.3} s after the Unix epoch ({ago})", show::unix_ns(created) as f64 / 1e9),
        );
        let layout = inspection.layout.map_or(String::new(), |l| format!(" ({l})"));
        field(&mut out, "fingerprint", format!("{:#018x}{layout}", header.layout_fingerprint));
    } else {
        field(&mut out, "header", "none: the file is shorter than a header".into());
    }
    if let Some(node) = &entry.node {
        let beat = node.heartbeat_age.map_or("never".into(), |a| format!("{} ago", show::age(a)));
        field(
            &mut out,
            "node",
            format!(
                "pid {} ({}), last heartbeat {beat}",
                show::pid(node.pid),
                show::liveness(node.liveness)
            ),
        );
    }
    if let SegmentKind::Payload { control, publisher, generation, pool } = &entry.kind {
        field(
            &mut out,
            "payload of",
            format!("{control}, publisher {publisher}, generation {generation}, pool {pool}"),
        );
    }
    if let Some(pool) = &inspection.pool {
        field(&mut out, "pool", pool_text(pool));
    }
    if let Some(topic) = &inspection.topic {
        topic_text(&mut out, topic);
    } else if let Some(service) = &entry.service {
        let role = if service.kind == ServiceKind::Event { "listeners" } else { "subscribers" };
        let _ = writeln!(out, "{role}");
        for peer in &service.subscribers {
            let _ = writeln!(
                out,
                "  slot {}  pid {} {}",
                peer.slot,
                show::pid(peer.pid),
                show::liveness(peer.liveness)
            );
        }
        if let Some(problem) = &service.problem {
            field(&mut out, "problem", problem.clone());
        }
    }
    out
}

/// One `key value` line.
fn field(out: &mut String, key: &str, value: String) {
    let _ = writeln!(out, "{key:<12} {value}");
}

fn pool_text(pool: &PoolDetail) -> String {
    let queued = pool.queued.map_or("? (its topic could not be read)".into(), |q| q.to_string());
    format!(
        "{queued} of {} blocks in queues (block {} B, {} element{})",
        pool.blocks,
        pool.block_size,
        pool.max_len,
        if pool.max_len == 1 { "" } else { "s" }
    )
}

fn topic_text(out: &mut String, topic: &TopicDetail) {
    let c = &topic.config;
    let _ = writeln!(
        out,
        "{:<12} {}: {} bytes, align {}, version {}",
        "payload", topic.type_name, topic.type_size, topic.type_align, topic.type_version
    );
    let _ = writeln!(
        out,
        "{:<12} publishers ≤ {}, subscribers ≤ {}, queue {}, held ≤ {}, loans ≤ {}, slice ≤ {}, \
         history {}, overflow {:?}",
        "settings",
        c.max_publishers,
        c.max_subscribers,
        c.subscriber_capacity,
        c.max_held,
        c.max_loans,
        c.max_slice_len,
        c.history,
        c.overflow
    );
    let _ = writeln!(out, "publishers");
    for p in &topic.publishers {
        let _ = writeln!(
            out,
            "  slot {}  pid {} {}  generation {}",
            p.peer.slot,
            show::pid(p.peer.pid),
            show::liveness(p.peer.liveness),
            p.generation
        );
        for pool in &p.pools {
            let _ = writeln!(out, "    pool {}: {}", pool.name, pool_text(pool));
        }
    }
    let _ = writeln!(out, "subscribers");
    for s in &topic.subscribers {
        let _ = writeln!(
            out,
            "  slot {}  pid {} {}  drops {}",
            s.peer.slot,
            show::pid(s.peer.pid),
            show::liveness(s.peer.liveness),
            s.peer.drops
        );
        for q in &s.queues {
            let _ = writeln!(
                out,
                "    from publisher {}: {} of {} queued, {} returned{}",
                q.publisher,
                q.queued,
                q.capacity,
                q.returned,
                if q.served { "" } else { " (not served yet)" }
            );
        }
    }
    for problem in &topic.problems {
        let _ = writeln!(out, "problem      {problem}");
    }
    let _ = writeln!(
        out,
        "note: blocks on loan, in the history or in a subscriber's hands are not counted"
    );
}

fn pool_json(pool: &PoolDetail) -> Value {
    json!({
        "name": pool.name.as_str(),
        "blocks": pool.blocks,
        "block_size": pool.block_size,
        "max_len": pool.max_len,
        "queued": pool.queued,
    })
}

fn to_json(inspection: &Inspection) -> Value {
    let mut value = show::entry_json(&inspection.entry);
    value["header"] = inspection.header.as_ref().map_or(Value::Null, |h| {
        json!({
            "magic": magic(h),
            "format_version": h.format_version,
            "header_size": h.header_size,
            "layout_fingerprint": format!("{:#018x}", h.layout_fingerprint),
            "layout": inspection.layout,
            "total_size": h.total_size,
            "creator_pid": h.creator_pid,
            "creator_start_time": h.creator_start_time,
            "creator_presence": format!("{:016x}", h.creator_token),
            "creator_liveness": show::liveness(h.creator_liveness()),
            "backing": backing(h.backing),
            "created_unix_ns": h.created_unix_ns,
            "init_state": init_state(h.init_state),
        })
    });
    if let Some(pool) = &inspection.pool {
        value["pool"] = pool_json(pool);
    }
    if let Some(topic) = &inspection.topic {
        let c = &topic.config;
        value["topic"] = json!({
            "type": {
                "name": topic.type_name,
                "size": topic.type_size,
                "align": topic.type_align,
                "version": topic.type_version,
            },
            "config": {
                "max_publishers": c.max_publishers,
                "max_subscribers": c.max_subscribers,
                "subscriber_capacity": c.subscriber_capacity,
                "max_held": c.max_held,
                "max_loans": c.max_loans,
                "max_slice_len": c.max_slice_len,
                "history": c.history,
                "overflow": format!("{:?}", c.overflow),
            },
            "publishers": topic.publishers.iter().map(|p| json!({
                "slot": p.peer.slot,
                "pid": p.peer.pid,
                "liveness": show::liveness(p.peer.liveness),
                "generation": p.generation,
                "pools": p.pools.iter().map(pool_json).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "subscribers": topic.subscribers.iter().map(|s| json!({
                "slot": s.peer.slot,
                "pid": s.peer.pid,
                "liveness": show::liveness(s.peer.liveness),
                "drops": s.peer.drops,
                "generation": s.generation,
                "queues": s.queues.iter().map(|q| json!({
                    "publisher": q.publisher,
                    "served": q.served,
                    "queued": q.queued,
                    "capacity": q.capacity,
                    "returned": q.returned,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "problems": topic.problems,
        });
    }
    value
}
