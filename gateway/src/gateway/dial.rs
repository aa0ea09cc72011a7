//! Import side of the links: dials a peer's link listener and keeps the link up, redialing
//! with exponential backoff and jitter.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use super::links::{describe_tls_error, explain_link_error, ping_loop};
use super::{Inner, LinkState, MAX_FRAME_SIZE, PeerConfig, SenderSlot};
use crate::metrics::PeerLabels;
use crate::tls::client_config;

/// Import side: keeps a link to `peer` up, redialing with exponential backoff.
pub(super) async fn dial_loop(
    inner: Arc<Inner>,
    peer: PeerConfig,
    address: String,
    state: Arc<watch::Sender<LinkState>>,
    sender: Arc<SenderSlot>,
) {
    let config = match client_config(&inner.identity, &peer.name, peer.fingerprint) {
        Ok(config) => Arc::new(config),
        Err(e) => {
            state.send_replace(LinkState::Down {
                reason: e.to_string(),
            });
            return;
        }
    };
    let connector = TlsConnector::from(config);
    let labels = PeerLabels {
        peer: peer.name.clone(),
    };
    let mut delay = inner.options.backoff_initial;
    loop {
        let reason = match timeout(
            inner.options.link_handshake_timeout,
            dial(&inner, &peer.name, &address, &connector),
        )
        .await
        {
            Ok(Ok((send_request, mut conn))) => {
                let ping_pong = conn.ping_pong().expect("ping_pong is taken once");
                let pinger = ping_loop(
                    inner.clone(),
                    peer.name.clone(),
                    ping_pong,
                    Some(state.clone()),
                    Some((send_request, sender.clone())),
                );
                inner.metrics.link_connects.get_or_create(&labels).inc();
                let was_up = state.subscribe();
                let reason = tokio::select! {
                    ended = conn => match ended {
                        Ok(()) => "the peer closed the link".to_string(),
                        Err(e) => explain_link_error(&e.to_string()),
                    },
                    reason = pinger => reason,
                };
                // A link that was up restarts the backoff; one that never got up (the peer
                // refused our certificate after the handshake) keeps backing off.
                if was_up.borrow().is_up() {
                    delay = inner.options.backoff_initial;
                }
                reason
            }
            Ok(Err(e)) => e,
            Err(_) => format!(
                "dialing {address} timed out after {:?}",
                inner.options.link_handshake_timeout
            ),
        };
        // Forget the link before announcing Down: no new stream may start on it.
        sender.send_replace(None);
        inner.metrics.link_up.get_or_create(&labels).set(0);
        tracing::warn!(peer = %peer.name, %address, %reason, retry_in = ?delay, "link down");
        state.send_replace(LinkState::Down { reason });
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(inner.options.backoff_max);
    }
}

/// Adds up to 20% random jitter so gateways that lost their links together do not redial in
/// lockstep.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let fraction = (random % 1000) as f64 / 5000.0;
    delay.mul_f64(1.0 + fraction)
}

type ClientConnection = h2::client::Connection<tokio_rustls::client::TlsStream<TcpStream>, Bytes>;

async fn dial(
    inner: &Inner,
    peer: &str,
    address: &str,
    connector: &TlsConnector,
) -> Result<(SendRequest<Bytes>, ClientConnection), String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to peer {peer:?} at {address}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    // The name is not checked (the certificate is pinned); it only has to be syntactically valid.
    let name = rustls::pki_types::ServerName::try_from(peer.to_string()).unwrap_or_else(|_| {
        rustls::pki_types::ServerName::try_from("liqo-gateway").expect("valid")
    });
    let tls = connector.connect(name, tcp).await.map_err(|e| {
        explain_link_error(&format!(
            "TLS handshake with peer {peer:?} at {address}: {}",
            describe_tls_error(&e)
        ))
    })?;
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(inner.options.stream_window)
        .initial_connection_window_size(inner.options.connection_window)
        .max_frame_size(MAX_FRAME_SIZE);
    builder
        .handshake(tls)
        .await
        .map_err(|e| explain_link_error(&format!("HTTP/2 handshake with peer {peer:?}: {e}")))
}
