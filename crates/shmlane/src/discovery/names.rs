//! What a segment is for, read from its name:
//!
//! | name | kind |
//! |---|---|
//! | `{namespace}.topic.{service}`, `{namespace}.event.{service}` | a service's control segment |
//! | `{namespace}.rpc.{service}.req`, `{namespace}.rpc.{service}.resp` | the two topics of a request/response service |
//! | `{control}.p{slot}.g{generation}`, then `.x{pool}` for an added pool | a publisher's payload segment |
//! | `{namespace}.node.{name}.{pid}.{n}` | a node's registration |
//! | anything else | a segment made with `shmlane_segment` directly |

use super::ServiceKind;

/// What a segment is for, by its name (see the module documentation of [`discovery`](super)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentKind {
    /// The control segment of a service.
    Service(ServiceKind),
    /// A payload segment of one publisher of a topic (or of one topic of a request/response
    /// service).
    Payload {
        /// The name of the topic's control segment, `{namespace}.{kind}.{service}`.
        control: String,
        /// The publisher slot.
        publisher: u32,
        /// The generation of the slot's holder that created it.
        generation: u32,
        /// 0 for the base pool, `n` for the pool added as `.x{n}`.
        pool: u32,
    },
    /// A node's registration.
    Node {
        /// The node's name.
        name: String,
    },
    /// A segment not made by this facade (made with `shmlane_segment` directly).
    Plain,
}

/// The namespace (for the facade's segments) and kind of the segment called `name`.
pub(crate) fn kind_of(name: &str) -> (Option<&str>, SegmentKind) {
    let plain = (None, SegmentKind::Plain);
    let Some((namespace, rest)) = name.split_once('.') else { return plain };
    if crate::node::check_name("namespace", namespace).is_err() {
        return plain;
    }
    if let Some(node) = rest.strip_prefix("node.") {
        // `{name}.{pid}.{n}`.
        let mut parts = node.rsplitn(3, '.');
        let (n, pid, name) = (parts.next(), parts.next(), parts.next());
        let numbers = [n, pid].iter().all(|part| part.is_some_and(|p| p.parse::<u32>().is_ok()));
        return match name {
            Some(name) if numbers => (Some(namespace), SegmentKind::Node { name: name.to_owned() }),
            _ => plain,
        };
    }
    let Some((word, service)) = rest.split_once('.') else { return plain };
    let kind = match word {
        "topic" => ServiceKind::Topic,
        "rpc" => ServiceKind::Rpc,
        "event" => ServiceKind::Event,
        _ => return plain,
    };
    if kind != ServiceKind::Event
        && let Some((service, publisher, generation, pool)) = payload_suffix(service)
    {
        let control = format!("{namespace}.{word}.{service}");
        return (Some(namespace), SegmentKind::Payload { control, publisher, generation, pool });
    }
    (Some(namespace), SegmentKind::Service(kind))
}

/// Splits `{service}.p{slot}.g{generation}[.x{pool}]` into its parts.
fn payload_suffix(name: &str) -> Option<(&str, u32, u32, u32)> {
    let number = |part: &str, prefix: char| part.strip_prefix(prefix)?.parse::<u32>().ok();
    let (rest, last) = name.rsplit_once('.')?;
    let (rest, pool, last) = match number(last, 'x') {
        Some(pool) if pool > 0 => {
            let (rest, last) = rest.rsplit_once('.')?;
            (rest, pool, last)
        }
        _ => (rest, 0, last),
    };
    let generation = number(last, 'g')?;
    let (service, slot) = rest.rsplit_once('.')?;
    let publisher = number(slot, 'p')?;
    (!service.is_empty()).then_some((service, publisher, generation, pool))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(control: &str, publisher: u32, generation: u32, pool: u32) -> SegmentKind {
        SegmentKind::Payload { control: control.into(), publisher, generation, pool }
    }

    #[test]
    fn control_segments_payload_segments_and_nodes_are_told_apart_by_name() {
        let topic = SegmentKind::Service(ServiceKind::Topic);
        assert_eq!(kind_of("app.topic.ticks"), (Some("app"), topic.clone()));
        assert_eq!(kind_of("app.rpc.adder.req").1, SegmentKind::Service(ServiceKind::Rpc));
        assert_eq!(kind_of("app.event.bell").1, SegmentKind::Service(ServiceKind::Event));
        assert_eq!(kind_of("app.topic.ticks.p0.g3").1, payload("app.topic.ticks", 0, 3, 0));
        assert_eq!(kind_of("app.topic.ticks.p2.g3.x7").1, payload("app.topic.ticks", 2, 3, 7));
        assert_eq!(kind_of("app.rpc.adder.resp.p0.g1").1, payload("app.rpc.adder.resp", 0, 1, 0));
        assert_eq!(
            kind_of("app.node.feed.1234.0"),
            (Some("app"), SegmentKind::Node { name: "feed".into() })
        );
        // An added pool is not a service of its own (it once was listed as one).
        assert_eq!(kind_of("app.topic.ticks.p0.g3.x1").0, Some("app"));
        assert_ne!(kind_of("app.topic.ticks.p0.g3.x1").1, topic);
    }

    #[test]
    fn names_the_facade_does_not_make_are_plain() {
        for name in [
            "pingpong",
            "app.other.x",
            "app.topic",
            "app.node.feed.x.0",
            "bad@ns.topic.x",
            "overflow.snapshot.12.0",
        ] {
            assert_eq!(kind_of(name), (None, SegmentKind::Plain), "{name}");
        }
        // A service whose own name looks like a suffix is still a service.
        assert_eq!(kind_of("app.topic.p0.g1").1, SegmentKind::Service(ServiceKind::Topic));
        assert_eq!(kind_of("app.event.x.p0.g1").1, SegmentKind::Service(ServiceKind::Event));
    }
}
