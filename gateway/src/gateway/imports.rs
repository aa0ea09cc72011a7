//! Import side of the streams: one local listener per import rule, each connection forwarded
//! to the peer as a `CONNECT` stream.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

use super::stream::run_stream;
use super::{Gateway, GatewayError, ImportListener, Inner, REASON_HEADER, Task, lock};
use crate::pump::abort;
use crate::target::{ImportRule, Target};

impl Gateway {
    /// Replaces the import table: listeners for new rules are bound, listeners for removed
    /// rules closed (connections they accepted keep running), listeners whose rule changed keep
    /// their socket and use the new rule for the next connection. Returns the bound address of
    /// each rule, in order. On error nothing changes.
    pub async fn set_imports(
        &self,
        rules: Vec<ImportRule>,
    ) -> Result<Vec<SocketAddr>, GatewayError> {
        self.check_import_rules(&rules)?;
        let mut imports = self.inner.imports.lock().await;
        // Bind every new listener first so a bind failure leaves the table unchanged.
        let mut bound = HashMap::new();
        for rule in &rules {
            if imports.contains_key(&rule.listen) {
                continue;
            }
            let listener =
                TcpListener::bind(rule.listen)
                    .await
                    .map_err(|source| GatewayError::Bind {
                        addr: rule.listen,
                        source,
                    })?;
            bound.insert(rule.listen, listener);
        }
        let wanted: HashSet<SocketAddr> = rules.iter().map(|r| r.listen).collect();
        let removed: Vec<SocketAddr> = imports
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(old) = imports.remove(&addr) {
                tracing::info!(listen = %old.local_addr, "import removed: closing its listener");
                old.task.stop().await;
            }
        }
        let mut addrs = Vec::with_capacity(rules.len());
        for rule in rules {
            if let Some(existing) = imports.get(&rule.listen) {
                existing.rule.send_if_modified(|r| {
                    let changed = *r != rule;
                    *r = rule.clone();
                    changed
                });
                addrs.push(existing.local_addr);
                continue;
            }
            let listener = bound.remove(&rule.listen).expect("bound above");
            let local_addr = listener.local_addr().map_err(|source| GatewayError::Bind {
                addr: rule.listen,
                source,
            })?;
            tracing::info!(listen = %local_addr, peer = %rule.peer, target = %rule.target, "import added");
            let (tx, rx) = watch::channel(rule.clone());
            let task = Task::spawn(accept_imports(self.inner.clone(), listener, rx));
            imports.insert(
                rule.listen,
                ImportListener {
                    rule: tx,
                    local_addr,
                    task,
                },
            );
            addrs.push(local_addr);
        }
        Ok(addrs)
    }

    /// Refuses import rules that share a listen address or name a peer that is not
    /// configured or has no address to dial.
    fn check_import_rules(&self, rules: &[ImportRule]) -> Result<(), GatewayError> {
        let peers = lock(&self.inner.peers);
        let mut seen = HashSet::new();
        for rule in rules {
            if !seen.insert(rule.listen) {
                return Err(GatewayError::DuplicateListen(rule.listen));
            }
            match peers.get(&rule.peer) {
                None => {
                    return Err(GatewayError::UnknownPeer {
                        listen: rule.listen,
                        peer: rule.peer.clone(),
                    });
                }
                Some(p) if p.config.address.is_none() => {
                    return Err(GatewayError::PeerWithoutAddress {
                        listen: rule.listen,
                        peer: rule.peer.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error("{0}")]
    H2(#[from] h2::Error),
    #[error("the peer refused the stream ({status}): {reason}")]
    Refused { status: StatusCode, reason: String },
    #[error("the peer did not accept the stream in time")]
    Timeout,
}

async fn open_stream(
    sender: SendRequest<Bytes>,
    target: &Target,
) -> Result<(h2::SendStream<Bytes>, RecvStream), OpenError> {
    let mut sender = sender.ready().await?;
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(target.authority())
        .body(())
        .expect("a valid authority always builds a request");
    let (response, send) = sender.send_request(request, false)?;
    let response = response.await?;
    let status = response.status();
    if status == StatusCode::OK {
        return Ok((send, response.into_body()));
    }
    let reason = response
        .headers()
        .get(REASON_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no reason given")
        .to_string();
    Err(OpenError::Refused { status, reason })
}

/// Forwards one local connection to `target` at `peer`. `destination` is the original
/// destination of a service listener's connection (`None` for an import rule's).
pub(super) async fn forward_import(
    inner: &Inner,
    peer: &str,
    target: &Target,
    destination: Option<SocketAddr>,
    sender: SendRequest<Bytes>,
    tcp: TcpStream,
) {
    let opened = timeout(
        inner.options.stream_open_timeout,
        open_stream(sender, target),
    )
    .await
    .unwrap_or(Err(OpenError::Timeout));
    match opened {
        Ok((send, recv)) => {
            run_stream(inner, peer, target, "import", tcp, send, recv).await;
        }
        Err(e) => {
            let reason = match &e {
                OpenError::Refused { status, .. } if *status == StatusCode::NOT_FOUND => {
                    "not_exported"
                }
                OpenError::Refused { .. } => "refused_by_peer",
                OpenError::Timeout => "timeout",
                OpenError::H2(_) => "link_error",
            };
            inner.metrics.refused(peer, "import", reason);
            match destination {
                // The service listener carries every reflected Service: per-connection logs
                // there stay at debug (the refused metric counts them).
                Some(destination) => {
                    tracing::debug!(%destination, %peer, %target, error = %e, "cannot open a stream: resetting the connection");
                }
                None => {
                    tracing::info!(%peer, %target, error = %e, "cannot open a stream: resetting the connection");
                }
            }
            abort(tcp);
        }
    }
}

/// Import side: accepts local connections for one rule and forwards each as a stream.
async fn accept_imports(
    inner: Arc<Inner>,
    listener: TcpListener,
    rule: watch::Receiver<ImportRule>,
) {
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an import connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let rule = rule.borrow().clone();
        let sender = lock(&inner.peers)
            .get(&rule.peer)
            .and_then(|p| p.sender.borrow().clone());
        let Some(sender) = sender else {
            // Refuse at once rather than leave the client hanging: it can retry or fail over.
            inner.metrics.refused(&rule.peer, "import", "link_down");
            tracing::debug!(peer = %rule.peer, target = %rule.target, "link down: resetting a new connection");
            abort(tcp);
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            forward_import(&inner, &rule.peer, &rule.target, None, sender, tcp).await;
        });
    }
}
