//! What the controllers share, so that none imports another: the established peers (the
//! peering controller publishes them, the offloading controller reads and subscribes) and the
//! [`DataPath`] (the gateway, implemented by [`crate::transport`], driven by the peering and
//! tenant controllers).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kube::Client;
use liqo_gateway::{Fingerprint, LinkState};

use crate::plugin::ClusterIdentity;
use crate::protocol::networking::ImportPeer;

/// The cross-cluster data path as the controllers drive it: the peering controller registers
/// the providers whose links this cluster accepts and reads their state for the NETWORKING
/// column; the provider's tenant controller hands over the consumers to dial and gates the
/// endpoints of a consumer whose link is down. The host's gateway ([`crate::transport`])
/// implements it; controllers hold an `Arc<dyn DataPath>` and never import `transport`.
pub trait DataPath: Send + Sync {
    /// This gateway's certificate fingerprint (announced on the peering Lease).
    fn fingerprint(&self) -> Fingerprint;
    /// `HOST:PORT` peers dial (announced on the peering Lease).
    fn link_advertise(&self) -> &str;
    /// Accepts the link of provider `peer` (ForeignCluster name), pinned to the fingerprint;
    /// `None` forgets the peer.
    fn set_export_peer(&self, peer: &str, entry: Option<(Fingerprint, String)>);
    /// Replaces the consumers this cluster dials (from their fresh peering Leases).
    fn set_import_peers(&self, peers: BTreeMap<String, ImportPeer>);
    /// The state of the link to `peer`, if it is a peer of the gateway.
    fn link_state(&self, peer: &str) -> Option<LinkState>;
    /// The ForeignCluster of provider `peer`, if it is in gateway mode.
    fn foreign_cluster_of(&self, peer: &str) -> Option<String>;
    /// Whether traffic to `peer` should be sent (its link is up, or down for only a moment).
    fn data_path_up(&self, peer: &str) -> bool;
}

/// A peer as the offloading controller needs it.
#[derive(Clone)]
pub struct Peer {
    /// The peer's identity.
    pub identity: ClusterIdentity,
    /// Client authenticated with the peering credential.
    pub client: Client,
    /// The ForeignCluster's labels (matched by `clusterSelector`).
    pub labels: BTreeMap<String, String>,
    /// Name of the ForeignCluster.
    pub foreign_cluster: String,
    /// The tenant namespace of this cluster's peering identity on the peer, when the credential
    /// is one (`liqoctl peer`): twin namespaces are then asked for through its NamespaceMap.
    /// `None` for a credential that may create namespaces itself (an admin's kubeconfig).
    pub tenant: Option<String>,
}

/// The established peers, shared by the peering and offloading controllers.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<RwLock<HashMap<String, (Peer, String)>>>,
    /// Bumped whenever a peer is added, replaced or removed.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl Peers {
    /// Notified whenever a peer is added, replaced or removed. The offloading controller
    /// re-evaluates every namespace then: a peer that (re)connects after a restart changes no
    /// ForeignCluster field, so watching ForeignClusters alone would miss it.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every established peer.
    pub fn list(&self) -> Vec<Peer> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The peer with cluster id `id`.
    pub fn get(&self, id: &str) -> Option<Peer> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(p, _)| p.clone())
    }

    pub(crate) fn fingerprint(&self, id: &str) -> Option<String> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|(_, f)| f.clone())
    }

    pub(crate) fn insert(&self, peer: Peer, fingerprint: String) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.identity.id.clone(), (peer, fingerprint));
        self.changes.send_modify(|n| *n += 1);
    }

    /// Records the current labels of peer `id`'s ForeignCluster (they change without
    /// re-establishing the peer: `kubectl label`, or the provider's cluster labels); the
    /// offloading controller is notified when they differ, so selection follows them.
    pub(crate) fn set_labels(&self, id: &str, labels: &BTreeMap<String, String>) {
        let changed = {
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            match inner.get_mut(id) {
                Some((peer, _)) if &peer.labels != labels => {
                    peer.labels = labels.clone();
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        let removed = self
            .inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .is_some();
        if removed {
            self.changes.send_modify(|n| *n += 1);
        }
    }
}
