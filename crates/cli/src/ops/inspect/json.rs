//! `shmlane inspect --json`: the segment as `list --json` shows it, plus its header, pool and
//! topic.

use serde_json::{Value, json};
use shmlane::discovery::{
    Inspection, PoolDetail, PublisherDetail, QueueFill, SubscriberDetail, TopicDetail,
};
use shmlane_segment::header::RawHeader;

use super::{backing, init_state, magic};
use crate::ops::show;

/// The whole report as one JSON object.
pub(super) fn to_json(inspection: &Inspection) -> Value {
    let mut value = show::entry_json(&inspection.entry);
    value["header"] = inspection
        .header
        .as_ref()
        .map_or(Value::Null, |header| header_json(header, inspection.layout));
    if let Some(pool) = &inspection.pool {
        value["pool"] = pool_json(pool);
    }
    if let Some(topic) = &inspection.topic {
        value["topic"] = topic_json(topic);
    }
    value
}

/// Every field of the header, and the name of the `layout` its fingerprint is.
fn header_json(header: &RawHeader, layout: Option<&str>) -> Value {
    json!({
        "magic": magic(header),
        "format_version": header.format_version,
        "header_size": header.header_size,
        "layout_fingerprint": format!("{:#018x}", header.layout_fingerprint),
        "layout": layout,
        "total_size": header.total_size,
        "creator_pid": header.creator_pid,
        "creator_start_time": header.creator_start_time,
        "creator_presence": format!("{:016x}", header.creator_token),
        "creator_liveness": show::liveness(header.creator_liveness()),
        "backing": backing(header.backing),
        "created_unix_ns": header.created_unix_ns,
        "init_state": init_state(header.init_state),
    })
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

/// A topic's payload type, settings, publishers, subscribers and problems.
fn topic_json(topic: &TopicDetail) -> Value {
    let config = &topic.config;
    json!({
        "type": {
            "name": topic.type_name,
            "size": topic.type_size,
            "align": topic.type_align,
            "version": topic.type_version,
        },
        "config": {
            "max_publishers": config.max_publishers,
            "max_subscribers": config.max_subscribers,
            "subscriber_capacity": config.subscriber_capacity,
            "max_held": config.max_held,
            "max_loans": config.max_loans,
            "max_slice_len": config.max_slice_len,
            "history": config.history,
            "overflow": format!("{:?}", config.overflow),
        },
        "publishers": topic.publishers.iter().map(publisher_json).collect::<Vec<_>>(),
        "subscribers": topic.subscribers.iter().map(subscriber_json).collect::<Vec<_>>(),
        "problems": topic.problems,
    })
}

fn publisher_json(publisher: &PublisherDetail) -> Value {
    json!({
        "slot": publisher.peer.slot,
        "pid": publisher.peer.pid,
        "liveness": show::liveness(publisher.peer.liveness),
        "generation": publisher.generation,
        "counters": show::counters_json(&publisher.peer.counters),
        "pools": publisher.pools.iter().map(pool_json).collect::<Vec<_>>(),
    })
}

fn subscriber_json(subscriber: &SubscriberDetail) -> Value {
    json!({
        "slot": subscriber.peer.slot,
        "pid": subscriber.peer.pid,
        "liveness": show::liveness(subscriber.peer.liveness),
        "drops": subscriber.peer.drops,
        "counters": show::counters_json(&subscriber.peer.counters),
        "generation": subscriber.generation,
        "queues": subscriber.queues.iter().map(queue_json).collect::<Vec<_>>(),
    })
}

fn queue_json(queue: &QueueFill) -> Value {
    json!({
        "publisher": queue.publisher,
        "served": queue.served,
        "queued": queue.queued,
        "inline": queue.inline,
        "capacity": queue.capacity,
        "returned": queue.returned,
    })
}
