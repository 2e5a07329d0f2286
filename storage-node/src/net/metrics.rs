//! What a node counts about its control plane, for `/metrics`: bytes by message kind and
//! gossip topic, transport bytes, open connections, and how much it keeps about others.
//!
//! One Prometheus registry per node. The control protocol's codec counts every message
//! ([`super::codec`]); gossipsub counts its own per-topic bytes; libp2p's transport
//! counts every byte on the wire; the gauges are set by the node as it goes.

use std::sync::Mutex;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// Which way bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    /// Received.
    In,
    /// Sent.
    Out,
}

/// Which half of a request-response exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Part {
    Request,
    Response,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, e: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        EncodeLabelValue::encode(&if *self == Self::In { "in" } else { "out" }, e)
    }
}

impl EncodeLabelValue for Part {
    fn encode(&self, e: &mut LabelValueEncoder<'_>) -> std::fmt::Result {
        let s = if *self == Self::Request {
            "request"
        } else {
            "response"
        };
        EncodeLabelValue::encode(&s, e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ControlLabels {
    direction: Direction,
    part: Part,
    kind: &'static str,
}

/// Control-protocol bytes by direction, part and message kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct ControlBytes(Family<ControlLabels, Counter>);

impl ControlBytes {
    pub(crate) fn add(&self, direction: Direction, part: Part, kind: &'static str, bytes: u64) {
        self.0
            .get_or_create(&ControlLabels {
                direction,
                part,
                kind,
            })
            .inc_by(bytes);
    }
}

/// A node's metrics.
#[derive(Debug)]
pub struct NetMetrics {
    registry: Mutex<Registry>,
    control: ControlBytes,
    pub(crate) connections: Gauge,
    pub(crate) holder_entries: Gauge,
    pub(crate) ledger_entries: Gauge,
    pub(crate) manifests: Gauge,
    pub(crate) placements: Gauge,
    pub(crate) records_put: Counter,
    pub(crate) workers: Family<WorkLabels, Gauge>,
}

/// Labels of the running-tasks gauge: the kind of work.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WorkLabels {
    pub(crate) work: &'static str,
}

impl Default for NetMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NetMetrics {
    /// A registry with Cairn's own metrics in it; the swarm adds libp2p's.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let control = ControlBytes::default();
        registry.register(
            "cairn_control_bytes",
            "Control-protocol bytes (CBOR, before noise and yamux framing), by direction, request or response, and message kind",
            control.0.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let connections = gauge(
            &mut registry,
            "cairn_connections_open",
            "libp2p connections open now, inbound and outbound",
        );
        let holder_entries = gauge(
            &mut registry,
            "cairn_holder_entries",
            "(piece, holder) entries this node keeps about other nodes",
        );
        let ledger_entries = gauge(
            &mut registry,
            "cairn_ledger_entries",
            "Nodes this node's audit ledger keeps standing for",
        );
        let manifests = gauge(
            &mut registry,
            "cairn_manifests_stored",
            "Dataset version manifests this node stores",
        );
        let placements = gauge(
            &mut registry,
            "cairn_placement_records",
            "Placement records this node keeps as a holder of their stripes (an estimate)",
        );
        let records_put = Counter::default();
        registry.register(
            "cairn_dht_records_put",
            "Placement records this node stored in the DHT for publishers (each once, however often it is sent)",
            records_put.clone(),
        );
        let workers = Family::<WorkLabels, Gauge>::default();
        registry.register(
            "cairn_workers_running",
            "Background tasks running now, by kind of work",
            workers.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            control,
            connections,
            holder_entries,
            ledger_entries,
            manifests,
            placements,
            records_put,
            workers,
        }
    }

    /// The counters the control codec adds to.
    pub(crate) fn control_bytes(&self) -> ControlBytes {
        self.control.clone()
    }

    /// The registry, for libp2p's own metrics to register into.
    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every metric, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry()).ok();
        out
    }
}
