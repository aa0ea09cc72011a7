//! The peers table and what both directions of a link share: the PING loop that decides a
//! link is up or down, and the text of link errors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Ping, PingPong};
use tokio::sync::watch;
use tokio::time::timeout;

use super::dial::dial_loop;
use super::{Gateway, GatewayError, Inner, LinkState, Peer, PeerConfig, SenderSlot, Task, lock};
use crate::identity::Fingerprint;
use crate::metrics::PeerLabels;
use crate::tls::PinError;

impl Gateway {
    /// Replaces the set of peers. New peers with an address are dialed; removed peers' links
    /// are closed; a peer whose fingerprint or address changed is reconnected.
    pub fn set_peers(&self, peers: Vec<PeerConfig>) -> Result<(), GatewayError> {
        let (names, pins) = unique_peers(&peers)?;
        let mut current = lock(&self.inner.peers);
        self.remove_peers(&mut current, &names);
        self.inner.pins.replace(pins);
        for config in peers {
            let dial = |state: &Arc<watch::Sender<LinkState>>, sender: &Arc<SenderSlot>| {
                config.address.clone().map(|address| {
                    Task::spawn(dial_loop(
                        self.inner.clone(),
                        config.clone(),
                        address,
                        state.clone(),
                        sender.clone(),
                    ))
                })
            };
            match current.get_mut(&config.name) {
                Some(peer) if peer.config == config => {}
                Some(peer) => {
                    // Changed pin or address: drop our link and start over, and drop an
                    // inbound link if it was authenticated with the old pin. The state channel
                    // is kept, so watchers of `link_state` keep following this peer.
                    tracing::info!(peer = %config.name, "peer changed: reconnecting");
                    peer.dial = None;
                    if peer.config.fingerprint != config.fingerprint {
                        peer.inbound = None;
                    }
                    peer.sender.send_replace(None);
                    peer.state.send_replace(LinkState::Down {
                        reason: "peer configuration changed: reconnecting".into(),
                    });
                    peer.dial = dial(&peer.state, &peer.sender);
                    peer.config = config;
                }
                None => {
                    let state = Arc::new(watch::Sender::new(LinkState::Down {
                        reason: match config.address {
                            Some(_) => "not connected yet".into(),
                            None => "waiting for the peer to connect".into(),
                        },
                    }));
                    let sender = Arc::new(watch::Sender::new(None));
                    self.inner
                        .metrics
                        .link_up
                        .get_or_create(&PeerLabels {
                            peer: config.name.clone(),
                        })
                        .set(0);
                    let dial = dial(&state, &sender);
                    current.insert(
                        config.name.clone(),
                        Peer {
                            config,
                            state,
                            sender,
                            dial,
                            inbound: None,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Closes the links of the peers not in `names` and forgets them.
    fn remove_peers(&self, current: &mut HashMap<String, Peer>, names: &HashSet<String>) {
        current.retain(|name, peer| {
            let keep = names.contains(name);
            if !keep {
                tracing::info!(peer = %name, "peer removed: closing its link");
                peer.state.send_replace(LinkState::Down {
                    reason: "peer removed from the configuration".into(),
                });
                self.inner
                    .metrics
                    .link_up
                    .remove(&PeerLabels { peer: name.clone() });
            }
            keep
        });
    }

    /// Watches the link to `peer`; `None` if the peer is not configured.
    pub fn link_state(&self, peer: &str) -> Option<watch::Receiver<LinkState>> {
        lock(&self.inner.peers)
            .get(peer)
            .map(|p| p.state.subscribe())
    }

    /// The current state of every peer's link.
    pub fn link_states(&self) -> HashMap<String, LinkState> {
        lock(&self.inner.peers)
            .iter()
            .map(|(name, p)| (name.clone(), p.state.borrow().clone()))
            .collect()
    }
}

/// Pings every `ping_interval`; returns the reason the link must be considered down. Each answer
/// updates `state` and the link metrics, when given (the link reports for the peer). The first
/// answer publishes `sender` for imports: a link counts as up only once the peer has answered
/// on it (with TLS 1.3 the client finishes its handshake before the server has checked the
/// client certificate, so a finished handshake alone proves nothing).
pub(super) async fn ping_loop(
    inner: Arc<Inner>,
    peer: String,
    mut ping_pong: PingPong,
    state: Option<Arc<watch::Sender<LinkState>>>,
    mut publish: Option<(SendRequest<Bytes>, Arc<SenderSlot>)>,
) -> String {
    let labels = PeerLabels { peer };
    loop {
        let start = Instant::now();
        match timeout(inner.options.ping_timeout, ping_pong.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {
                let rtt = start.elapsed();
                if let Some((sender, slot)) = publish.take() {
                    slot.send_replace(Some(sender));
                    tracing::info!(peer = %labels.peer, ?rtt, "link up");
                }
                if let Some(state) = &state {
                    state.send_replace(LinkState::Up { rtt });
                    inner
                        .metrics
                        .link_rtt
                        .get_or_create(&labels)
                        .set(rtt.as_secs_f64());
                    inner.metrics.link_up.get_or_create(&labels).set(1);
                }
            }
            Ok(Err(e)) => return format!("link error: {e}"),
            Err(_) => {
                return format!("no answer to PING within {:?}", inner.options.ping_timeout);
            }
        }
        tokio::time::sleep(inner.options.ping_interval).await;
    }
}

/// The message of a TLS I/O error, showing our own [`PinError`] as itself rather than through
/// rustls' `Debug` of the wrapped error.
pub(super) fn describe_tls_error(e: &std::io::Error) -> String {
    let pin_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<PinError>()
            }
            _ => None,
        });
    match pin_error {
        Some(pin) => pin.to_string(),
        None => e.to_string(),
    }
}

/// Adds a hint to the opaque error a refused client certificate produces.
pub(super) fn explain_link_error(error: &str) -> String {
    if error.contains("close_notify") {
        // rustls' message for a plain TCP close ends in a documentation URL; say what happened.
        "the peer closed the link (TCP connection ended without TLS close_notify)".to_string()
    } else if error.contains("BadCertificate") || error.contains("CertificateUnknown") {
        format!(
            "{error}: the peer refused this gateway's certificate (is our fingerprint pinned there?)"
        )
    } else {
        error.to_string()
    }
}

/// The names of `peers` and their pins (fingerprint to name); an error if a name or a
/// fingerprint appears twice.
fn unique_peers(
    peers: &[PeerConfig],
) -> Result<(HashSet<String>, HashMap<Fingerprint, String>), GatewayError> {
    let mut names = HashSet::new();
    let mut pins = HashMap::new();
    for p in peers {
        if !names.insert(p.name.clone()) {
            return Err(GatewayError::DuplicatePeer(p.name.clone()));
        }
        if pins.insert(p.fingerprint, p.name.clone()).is_some() {
            return Err(GatewayError::DuplicatePeer(p.fingerprint.to_string()));
        }
    }
    Ok((names, pins))
}
