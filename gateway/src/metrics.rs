//! Prometheus metrics of the gateway (prometheus-client, like the host).
//!
//! Per-stream series are labelled by peer, `NAMESPACE/SERVICE` and role (`import`: a local
//! client's connection sent to the peer; `export`: a peer's stream served locally), so both
//! per-peer and per-Service totals are one `sum by` away. Label values only ever come from the
//! configured tables, never from what a peer sends, so a peer cannot blow up cardinality.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::target::Target;

/// Labels of per-stream series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StreamLabels {
    /// The peer cluster.
    pub peer: String,
    /// `NAMESPACE/SERVICE` of the target.
    pub service: String,
    /// `import` or `export`.
    pub role: &'static str,
}

/// Labels of byte counters: [`StreamLabels`] plus the direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ByteLabels {
    /// The peer cluster.
    pub peer: String,
    /// `NAMESPACE/SERVICE` of the target.
    pub service: String,
    /// `import` or `export`.
    pub role: &'static str,
    /// `sent` (towards the peer) or `received` (from the peer).
    pub direction: &'static str,
}

/// Labels of per-peer series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer cluster.
    pub peer: String,
}

/// Labels of refused streams.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusedLabels {
    /// The peer cluster.
    pub peer: String,
    /// `import` or `export`.
    pub role: &'static str,
    /// Short machine-readable reason (`link_down`, `not_exported`, `bad_target`, ...).
    pub reason: &'static str,
}

/// All gateway metrics. Cheap to clone (families are shared).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `liqo_gateway_bytes_total`.
    pub bytes: Family<ByteLabels, Counter>,
    /// `liqo_gateway_streams_total`: streams opened.
    pub streams_total: Family<StreamLabels, Counter>,
    /// `liqo_gateway_streams_open`: streams currently open.
    pub streams_open: Family<StreamLabels, Gauge>,
    /// `liqo_gateway_streams_reset_total`: streams ended by an error (reset) rather than cleanly.
    pub streams_reset: Family<StreamLabels, Counter>,
    /// `liqo_gateway_streams_refused_total`: connections or streams refused before forwarding.
    pub streams_refused: Family<RefusedLabels, Counter>,
    /// `liqo_gateway_link_up`: 1 while the link to the peer is up (the link we dial for peers
    /// with an address, else the inbound one; see [`crate::LinkState`]).
    pub link_up: Family<PeerLabels, Gauge>,
    /// `liqo_gateway_link_rtt_seconds`: last HTTP/2 PING round trip on the link.
    pub link_rtt: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    /// `liqo_gateway_link_connects_total`: establishments of the link that reports for the peer
    /// (the one we dial, or else the inbound one); reconnects show here.
    pub link_connects: Family<PeerLabels, Counter>,
}

impl Metrics {
    /// New metrics, registered in `registry` under the `liqo_gateway` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let r = registry.sub_registry_with_prefix("liqo_gateway");
        r.register(
            "bytes",
            "Bytes forwarded through the gateway, per peer, Service, role and direction",
            m.bytes.clone(),
        );
        r.register(
            "streams",
            "Streams opened, per peer, Service and role",
            m.streams_total.clone(),
        );
        r.register(
            "streams_open",
            "Streams currently open, per peer, Service and role",
            m.streams_open.clone(),
        );
        r.register(
            "streams_reset",
            "Streams that ended with an error (the local side saw a reset)",
            m.streams_reset.clone(),
        );
        r.register(
            "streams_refused",
            "Connections or streams refused before forwarding, per reason",
            m.streams_refused.clone(),
        );
        r.register(
            "link_up",
            "1 while the link to the peer's gateway is up",
            m.link_up.clone(),
        );
        r.register(
            "link_rtt_seconds",
            "Round-trip time of the last HTTP/2 PING on the link",
            m.link_rtt.clone(),
        );
        r.register(
            "link_connects",
            "Times the link to the peer was established",
            m.link_connects.clone(),
        );
        m
    }

    pub(crate) fn stream_labels(peer: &str, target: &Target, role: &'static str) -> StreamLabels {
        StreamLabels {
            peer: peer.to_string(),
            service: target.service_label(),
            role,
        }
    }

    pub(crate) fn refused(&self, peer: &str, role: &'static str, reason: &'static str) {
        self.streams_refused
            .get_or_create(&RefusedLabels {
                peer: peer.to_string(),
                role,
                reason,
            })
            .inc();
    }
}
