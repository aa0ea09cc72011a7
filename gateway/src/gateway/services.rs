//! The service listener: one socket for every reflected Service, each connection routed by
//! its original destination and forwarded as an import rule's would be.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::imports::forward_import;
use super::{Gateway, GatewayError, Inner, ServiceListener, Task, lock};
use crate::original_dst::original_destination;
use crate::pump::abort;
use crate::target::{ServiceResolver, ServiceRoute};

impl Gateway {
    /// Starts (or replaces) the service listener on `addr`; returns the bound address.
    ///
    /// Every connection it accepts is routed by its original destination (the Service
    /// ClusterIP:port or NodeIP:nodePort the client dialed before kube-proxy's DNAT, see
    /// [`crate::original_destination`]): `resolver` names the peer and target, and the
    /// connection is forwarded exactly like one accepted by an import rule (metrics with role
    /// `import`). A destination the resolver does not know, or a route to a peer that is not
    /// configured, has no address or whose link is down, resets the connection at once.
    ///
    /// Called again with the same `addr` (as requested, or as bound) it keeps the socket and
    /// only replaces the resolver, for the next connections. With another address it binds the
    /// new one first, then closes the old listener; on error the old listener stays. Either way
    /// connections already accepted continue. Dropping the gateway or [`Gateway::shutdown`]
    /// closes the listener.
    pub async fn listen_services(
        &self,
        addr: SocketAddr,
        resolver: Arc<dyn ServiceResolver>,
    ) -> Result<SocketAddr, GatewayError> {
        let mut current = self.inner.services.lock().await;
        if let Some(existing) = current.as_ref()
            && (existing.requested == addr || existing.local_addr == addr)
        {
            existing.resolver.send_replace(resolver);
            tracing::info!(listen = %existing.local_addr, "service listener: resolver replaced");
            return Ok(existing.local_addr);
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        let (tx, rx) = watch::channel(resolver);
        let task = Task::spawn(accept_services(self.inner.clone(), listener, rx));
        let old = current.replace(ServiceListener {
            requested: addr,
            local_addr,
            resolver: tx,
            task,
        });
        if let Some(old) = old {
            tracing::info!(listen = %old.local_addr, "service listener moved: closing the old one");
            old.task.stop().await;
        }
        tracing::info!(listen = %local_addr, "service listener: accepting connections to reflected Services");
        Ok(local_addr)
    }
}

/// Service listener: accepts local connections for every reflected Service, routes each by its
/// original destination and forwards it as an import rule would.
async fn accept_services(
    inner: Arc<Inner>,
    listener: TcpListener,
    resolver: watch::Receiver<Arc<dyn ServiceResolver>>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a service connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // The peer is unknown in both refusals below, so their series has an empty `peer`
        // (a destination as label value would be unbounded).
        let destination = match original_destination(&tcp) {
            Ok(destination) => destination,
            Err(e) => {
                inner.metrics.refused("", "import", "unknown_destination");
                tracing::debug!(error = %e, "cannot read a connection's original destination: resetting it");
                abort(tcp);
                continue;
            }
        };
        // Clone the resolver out of the channel: `resolve` must not run under its lock.
        let resolver = resolver.borrow().clone();
        let Some(ServiceRoute { peer, target }) = route_of(resolver.as_ref(), destination) else {
            inner.metrics.refused("", "import", "unknown_destination");
            tracing::debug!(%destination, "no Service at the original destination: resetting the connection");
            abort(tcp);
            continue;
        };
        let sender = {
            let peers = lock(&inner.peers);
            match peers.get(&peer) {
                None => Err("unknown_peer"),
                Some(p) if p.config.address.is_none() => Err("peer_without_address"),
                Some(p) => p.sender.borrow().clone().ok_or("link_down"),
            }
        };
        let sender = match sender {
            Ok(sender) => sender,
            Err(reason) => {
                // Refuse at once rather than leave the client hanging: it can retry or fail over.
                inner.metrics.refused(&peer, "import", reason);
                tracing::debug!(%destination, %peer, %target, reason, "cannot forward a service connection: resetting it");
                abort(tcp);
                continue;
            }
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            forward_import(&inner, &peer, &target, Some(destination), sender, tcp).await;
        });
    }
}

/// Asks `resolver`; a panicking resolver refuses the connection instead of killing the listener
/// (which would cut every reflected Service at once).
fn route_of(resolver: &dyn ServiceResolver, destination: SocketAddr) -> Option<ServiceRoute> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        resolver.resolve(destination)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%destination, "the service resolver panicked: resetting the connection");
        None
    })
}
