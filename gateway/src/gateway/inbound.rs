//! Export side of the links: accepts the TLS links peers dial, authenticates each peer by its
//! pinned certificate and serves its streams.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::exports::serve_export;
use super::links::{describe_tls_error, explain_link_error, ping_loop};
use super::{Inner, LinkState, MAX_FRAME_SIZE, Task, lock};
use crate::identity::Fingerprint;
use crate::metrics::PeerLabels;

/// Export side: accepts TLS links from peers.
pub(super) async fn accept_links(inner: Arc<Inner>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a peer link failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let task = Task::spawn(serve_link(inner.clone(), tcp, remote, acceptor.clone()));
        let mut connections = lock(&inner.connections);
        connections.retain(|t| !t.is_finished());
        connections.push(task);
    }
}

fn record_inbound_error(inner: &Inner, remote: SocketAddr, error: String) {
    tracing::warn!(%remote, %error, "refused a peer link");
    *lock(&inner.last_inbound_error) = Some(format!("link from {remote}: {error}"));
}

/// Serves one inbound link: authenticates the peer, then serves its streams until the link ends.
async fn serve_link(inner: Arc<Inner>, tcp: TcpStream, remote: SocketAddr, acceptor: TlsAcceptor) {
    let Some((peer, mut conn)) = handshake(&inner, tcp, remote, acceptor).await else {
        return;
    };
    let generation = inner
        .inbound_generation
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (kill_tx, mut kill_rx) = oneshot::channel::<()>();
    let Some((state, reports)) = register_inbound(&inner, &peer, generation, kill_tx) else {
        return;
    };
    if reports {
        inner
            .metrics
            .link_connects
            .get_or_create(&PeerLabels { peer: peer.clone() })
            .inc();
    }
    tracing::info!(%peer, %remote, "peer link accepted");
    let ping_pong = conn.ping_pong().expect("ping_pong is taken once");
    let mut pinger = pin!(ping_loop(
        inner.clone(),
        peer.clone(),
        ping_pong,
        reports.then(|| state.clone()),
        None
    ));
    let reason = loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    let inner = inner.clone();
                    let peer = peer.clone();
                    tokio::spawn(async move { serve_export(&inner, &peer, request, respond).await });
                }
                Some(Err(e)) => break explain_link_error(&format!("link error: {e}")),
                None => break "the peer closed the link".to_string(),
            },
            reason = &mut pinger => break reason,
            _ = &mut kill_rx => break "replaced by a newer link, or the peer was removed".to_string(),
        }
    };
    tracing::info!(%peer, %remote, %reason, "peer link ended");
    end_inbound(&inner, peer, generation, reports, reason);
}

type ServerConnection = h2::server::Connection<tokio_rustls::server::TlsStream<TcpStream>, Bytes>;

/// The TLS and HTTP/2 handshakes of an inbound link, and the peer its certificate is pinned
/// for; `None` (the failure recorded) when either fails or the peer is gone.
async fn handshake(
    inner: &Inner,
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
) -> Option<(String, ServerConnection)> {
    let opts = &inner.options;
    let tls = match timeout(opts.link_handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            record_inbound_error(
                inner,
                remote,
                format!("TLS handshake: {}", describe_tls_error(&e)),
            );
            return None;
        }
        Err(_) => {
            record_inbound_error(inner, remote, "TLS handshake timed out".into());
            return None;
        }
    };
    // The verifier accepted the certificate, so it is pinned for a peer: find which.
    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| inner.pins.peer_of(&Fingerprint::of_der(cert)));
    let Some(peer) = peer else {
        // The peer was removed between the handshake and now.
        record_inbound_error(inner, remote, "certificate no longer pinned".into());
        return None;
    };
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(opts.stream_window)
        .initial_connection_window_size(opts.connection_window)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_concurrent_streams(10_000);
    match timeout(opts.link_handshake_timeout, builder.handshake(tls)).await {
        Ok(Ok(conn)) => Some((peer, conn)),
        Ok(Err(e)) => {
            record_inbound_error(inner, remote, format!("HTTP/2 handshake: {e}"));
            None
        }
        Err(_) => {
            record_inbound_error(inner, remote, "HTTP/2 handshake timed out".into());
            None
        }
    }
}

/// Makes this link the peer's current inbound link (ending the previous one through its
/// `kill` sender); returns the peer's state and whether this link reports it, or `None` if the
/// peer is gone.
fn register_inbound(
    inner: &Inner,
    peer: &str,
    generation: u64,
    kill: oneshot::Sender<()>,
) -> Option<(Arc<watch::Sender<LinkState>>, bool)> {
    let mut peers = lock(&inner.peers);
    let p = peers.get_mut(peer)?;
    // Newest link wins: after a restart the old connection may linger until its PINGs time
    // out, and the peer only uses the new one.
    p.inbound = Some((generation, kill));
    // A peer we dial has its state (and link metrics) from that outbound link, the one our
    // imports use; an inbound link reports only for peers we do not dial.
    Some((p.state.clone(), p.config.address.is_none()))
}

/// Forgets the peer's inbound link if it is still this one (`generation`) and, when this link
/// reports the peer's state, marks the peer down for `reason`.
fn end_inbound(inner: &Inner, peer: String, generation: u64, reports: bool, reason: String) {
    let mut peers = lock(&inner.peers);
    if let Some(p) = peers.get_mut(&peer)
        && p.inbound.as_ref().is_some_and(|(g, _)| *g == generation)
    {
        p.inbound = None;
        if !reports {
            return;
        }
        p.state.send_replace(LinkState::Down { reason });
        inner
            .metrics
            .link_up
            .get_or_create(&PeerLabels { peer })
            .set(0);
    }
}
