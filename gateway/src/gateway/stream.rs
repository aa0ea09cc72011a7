//! One forwarded stream, either side: the bytes spliced both ways, with its metrics.

use bytes::Bytes;
use h2::RecvStream;
use tokio::net::TcpStream;

use super::Inner;
use crate::metrics::{ByteLabels, Metrics};
use crate::pump::{Counters, splice};
use crate::target::Target;

/// Runs one stream with its metrics.
pub(super) async fn run_stream(
    inner: &Inner,
    peer: &str,
    target: &Target,
    role: &'static str,
    tcp: TcpStream,
    send: h2::SendStream<Bytes>,
    recv: RecvStream,
) {
    let metrics = &inner.metrics;
    let labels = Metrics::stream_labels(peer, target, role);
    let bytes = |direction| {
        metrics
            .bytes
            .get_or_create(&ByteLabels {
                peer: labels.peer.clone(),
                service: labels.service.clone(),
                role,
                direction,
            })
            .clone()
    };
    let counters = Counters {
        sent: bytes("sent"),
        received: bytes("received"),
    };
    metrics.streams_total.get_or_create(&labels).inc();
    let open = metrics.streams_open.get_or_create(&labels).clone();
    open.inc();
    // Decrement even if the task is aborted mid-stream.
    struct OpenGuard(prometheus_client::metrics::gauge::Gauge);
    impl Drop for OpenGuard {
        fn drop(&mut self) {
            self.0.dec();
        }
    }
    let _guard = OpenGuard(open);
    if let Err(e) = splice(tcp, send, recv, counters).await {
        metrics.streams_reset.get_or_create(&labels).inc();
        tracing::debug!(%peer, %target, role, error = %e, "stream reset");
    }
}
