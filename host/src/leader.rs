//! Leader election through a `coordination.k8s.io/v1` Lease, so two host replicas never write
//! at once.
//!
//! [`elect`] joins the election on one Lease (created if missing) and returns a
//! [`Leadership`]: whether this replica leads now ([`Leadership::is_leader`]), a way to wait for
//! it ([`Leadership::wait_until_leader`]) or follow it ([`Leadership::subscribe`]), and
//! [`Leadership::release`] to hand over at once on a graceful shutdown (dropping it releases
//! too, in the background).
//!
//! The lease itself (acquire, renew `grace` before expiry, take over an expired one, release)
//! is run by the `kube-lease-manager` crate. On top of it this module adds one safety rule the
//! crate lacks: the crate keeps reporting "leader" while it cannot reach the API server, but
//! after the lease expires another replica may take it. So this replica only reports itself
//! leader while it has *seen* its own renewal on a watch of the Lease, and steps down on its own
//! when `renewTime + leaseDuration - grace/2` passes without one (the `grace/2` margin tolerates
//! some clock skew between nodes). It becomes leader again if a later renewal succeeds and
//! nobody else took the lease meanwhile.
//!
//! Handover. The crate's waiting replicas sleep until the end of the term they last read, so
//! on their own they would notice a *released* lease only at their next wake-up, up to
//! `lease_duration - grace` later. This module's watch of the Lease sees the release at once and
//! restarts the crate's loop, which re-reads the Lease and takes it: a graceful handover takes
//! a few API round trips (measured by `liqoctl/tests/leader_handover.rs`). A crashed leader is
//! replaced when its term ends, within `lease_duration` of its last renewal plus up to a second
//! of the crate's randomized back-off.
//!
//! RBAC: the host's ServiceAccount needs `get`, `list`, `watch`, `create`, `update` and `patch`
//! on `leases.coordination.k8s.io` in the Lease's namespace.

use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Default namespace of the Lease: the one `liqoctl install` creates.
pub const DEFAULT_NAMESPACE: &str = crate::api::wire::HOST_NAMESPACE;
/// Default name of the Lease.
pub const DEFAULT_LEASE_NAME: &str = crate::api::wire::HOST_NAME;
/// Default term of the lease: how long a leader that stopped renewing keeps it.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// Default grace: the leader renews this long before its term ends.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// Where and as whom to run the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Namespace of the Lease (default [`DEFAULT_NAMESPACE`]).
    pub namespace: String,
    /// Name of the Lease (default [`DEFAULT_LEASE_NAME`]). Replicas that must exclude each other
    /// use the same name.
    pub lease_name: String,
    /// Unique identity of this replica, written as the Lease's `holderIdentity` (default
    /// [`default_identity`]). Two replicas with the same identity would both believe they lead.
    pub identity: String,
    /// How long the lease stays valid after the last renewal (whole seconds, at least 2).
    pub lease_duration: Duration,
    /// How long before expiry the leader renews (whole seconds, at least 1, less than
    /// `lease_duration`). It also bounds the clock skew between nodes that is tolerated.
    pub grace: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        LeaderConfig {
            namespace: DEFAULT_NAMESPACE.to_string(),
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            identity: default_identity(),
            lease_duration: DEFAULT_LEASE_DURATION,
            grace: DEFAULT_GRACE,
        }
    }
}

impl LeaderConfig {
    /// `namespace/name` of the Lease, as error messages and logs show it.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }

    /// Checks the settings without contacting the API server.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |reason: String| LeaderError::InvalidConfig {
            lease: self.lease(),
            reason,
        };
        if self.namespace.is_empty() || self.lease_name.is_empty() {
            return Err(invalid("namespace and lease name must not be empty".into()));
        }
        if self.identity.trim().is_empty() {
            return Err(invalid(
                "identity must not be empty (set POD_NAME or pass an identity)".into(),
            ));
        }
        // Lease durations are whole seconds on the wire; refuse rather than silently round.
        for (what, d) in [
            ("lease duration", self.lease_duration),
            ("grace", self.grace),
        ] {
            if d.subsec_nanos() != 0 || d.is_zero() {
                return Err(invalid(format!(
                    "{what} must be a positive whole number of seconds, got {d:?}"
                )));
            }
        }
        if self.grace >= self.lease_duration {
            return Err(invalid(format!(
                "grace ({:?}) must be shorter than the lease duration ({:?})",
                self.grace, self.lease_duration
            )));
        }
        Ok(())
    }
}

/// This replica's identity: `$POD_NAME` when set (unique per pod, readable in
/// `kubectl get lease`), else `HOSTNAME-PID` so two processes on one machine differ too.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME")
        && !pod.trim().is_empty()
    {
        return pod.trim().to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "liqo-host".to_string());
    format!("{host}-{}", std::process::id())
}

/// Why leader election could not start or stop cleanly. Every message names the Lease
/// (`namespace/name`) and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The [`LeaderConfig`] is unusable.
    #[error("leader election on Lease {lease}: {reason}")]
    InvalidConfig {
        /// `namespace/name` of the Lease.
        lease: String,
        /// What is wrong.
        reason: String,
    },
    /// The Lease's namespace does not exist.
    #[error(
        "leader election on Lease {lease}: namespace {namespace} does not exist; create namespace {namespace} or run liqoctl install"
    )]
    NamespaceMissing {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The missing namespace.
        namespace: String,
    },
    /// RBAC does not allow this replica to use the Lease.
    #[error(
        "leader election on Lease {lease}: forbidden ({message}); grant get, list, watch, create, update and patch on leases.coordination.k8s.io in namespace {namespace} to the host's ServiceAccount (liqoctl install sets this up)"
    )]
    Forbidden {
        /// `namespace/name` of the Lease.
        lease: String,
        /// Namespace where the permissions are missing.
        namespace: String,
        /// The API server's message.
        message: String,
    },
    /// Another error from the API server or the connection to it.
    #[error(
        "leader election on Lease {lease}: {reason}; check that the API server is reachable with the host's credentials"
    )]
    Api {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The error, as text.
        reason: String,
    },
    /// Clearing the holder of the Lease failed; the lease then simply expires.
    #[error(
        "releasing Lease {lease} failed: {reason}; another replica takes over when the lease expires"
    )]
    Release {
        /// `namespace/name` of the Lease.
        lease: String,
        /// The error, as text.
        reason: String,
    },
    /// Clearing the holder took longer than a lease term; the lease has expired by then.
    #[error(
        "releasing Lease {lease} did not finish within {waited:?}; another replica takes over when the lease expires"
    )]
    ReleaseTimedOut {
        /// `namespace/name` of the Lease.
        lease: String,
        /// How long the release was waited for.
        waited: Duration,
    },
    /// The election task ended while the [`Leadership`] was still in use (a bug: it only ends
    /// when released).
    #[error(
        "leader election on Lease {lease} stopped unexpectedly; this replica cannot become leader, restart it"
    )]
    Stopped {
        /// `namespace/name` of the Lease.
        lease: String,
    },
}

/// Maps a Kubernetes error to the variant that tells the operator what to fix.
fn classify(config: &LeaderConfig, error: &kube::Error) -> LeaderError {
    let lease = config.lease();
    match error {
        kube::Error::Api(status) if status.code == 403 => LeaderError::Forbidden {
            lease,
            namespace: config.namespace.clone(),
            message: status.message.clone(),
        },
        // The crate creates a missing Lease, so a 404 here means the namespace is missing.
        kube::Error::Api(status) if status.code == 404 => LeaderError::NamespaceMissing {
            lease,
            namespace: config.namespace.clone(),
        },
        kube::Error::Api(status) => LeaderError::Api {
            lease,
            reason: format!("{} (HTTP {})", status.message, status.code),
        },
        other => LeaderError::Api {
            lease,
            reason: other.to_string(),
        },
    }
}

fn classify_manager(config: &LeaderConfig, error: &LeaseManagerError) -> LeaderError {
    match error {
        LeaseManagerError::KubeError(e) => classify(config, e),
        other => LeaderError::Api {
            lease: config.lease(),
            reason: other.to_string(),
        },
    }
}

/// Server-side-apply field manager for `identity`. The crate detects two replicas locking at
/// once through apply conflicts, which only happen between *different* field managers, so it
/// must be unique per identity: a hash replaces identities too long for the API server's
/// 128-character limit instead of truncating them (truncation could make two equal).
fn field_manager(identity: &str) -> String {
    const PREFIX: &str = "liqo-host-";
    if PREFIX.len() + identity.len() <= 128 {
        format!("{PREFIX}{identity}")
    } else {
        let digest = Sha256::digest(identity.as_bytes());
        format!("{PREFIX}{}", &hex::encode(digest)[..32])
    }
}

/// Joins the election on the configured Lease, creating it if it does not exist, and starts
/// campaigning in the background. Returns at once; leadership comes later (see
/// [`Leadership::wait_until_leader`]). Must be called within a tokio runtime.
///
/// # Errors
/// [`LeaderError::InvalidConfig`], or the API server refused to read or create the Lease
/// ([`LeaderError::NamespaceMissing`], [`LeaderError::Forbidden`], [`LeaderError::Api`]).
pub async fn elect(client: kube::Client, config: LeaderConfig) -> Result<Leadership, LeaderError> {
    config.validate()?;
    let lease = config.lease();

    let manager = build_manager(&client, &config).await?;

    // The renewal guard watches the Lease; check `list` now so missing RBAC fails here, with
    // the fix in the message, rather than as a replica that never becomes leader.
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let selector = format!("metadata.name={}", config.lease_name);
    api.list(&ListParams::default().fields(&selector).limit(1))
        .await
        .map_err(|e| classify(&config, &e))?;
    let events = watcher(api, watcher::Config::default().fields(&selector)).default_backoff();

    let (manager_rx, manager_task) = manager.watch().await;
    let campaign = Campaign {
        state: manager_rx,
        task: Some(manager_task),
        rebuild: Some((client, config.clone())),
        restarts: 0,
    };
    let (state_tx, state_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel();
    let guard = Guard {
        lease: lease.clone(),
        identity: config.identity.clone(),
        margin: config.grace / 2,
        restart_timeout: config.lease_duration,
    };
    let supervisor = tokio::spawn(guard.run(campaign, events, state_tx, stop_rx));
    tracing::info!(%lease, identity = %config.identity, "joined leader election");

    Ok(Leadership {
        lease,
        identity: config.identity,
        state: state_rx,
        stop: stop_tx,
        supervisor,
        release_timeout: config.lease_duration,
    })
}

/// The crate's manager for `config` (creates the Lease if it is missing).
async fn build_manager(
    client: &kube::Client,
    config: &LeaderConfig,
) -> Result<LeaseManager, LeaderError> {
    LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        // After `with_identity`: the builder does not derive the field manager from it.
        .with_field_manager(field_manager(&config.identity))
        .with_duration(config.lease_duration.as_secs())
        .with_grace(config.grace.as_secs())
        .build()
        .await
        .map_err(|e| classify_manager(config, &e))
}

/// The crate's campaign: its loop (a task owning the [`LeaseManager`]) and the leadership it
/// reports. The guard restarts it when it sees the Lease released, because the loop of a
/// waiting replica sleeps until the end of the term it last read and would take a released
/// lease only then.
struct Campaign {
    /// Leadership as the crate reports it (its only receiver: dropping it ends the loop).
    state: watch::Receiver<bool>,
    /// The crate's loop; `None` once it could not be restarted, and in unit tests.
    task: Option<JoinHandle<Result<LeaseManager, LeaseManagerError>>>,
    /// How to build a new manager if the loop ends with an error; `None` in unit tests.
    rebuild: Option<(kube::Client, LeaderConfig)>,
    /// Restarts so far (for the unit tests).
    restarts: u32,
}

impl std::fmt::Debug for Campaign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Campaign")
            .field("leader", &*self.state.borrow())
            .field("running", &self.task.is_some())
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}

impl Campaign {
    /// Ends the crate's loop and starts it again, so that it re-reads the Lease now. Meant for a
    /// replica that does not hold the lease: as it ends, the loop clears the holder only if it
    /// holds the lease itself (by its last read) or a fresh read shows the term over, so it
    /// never clears another replica's valid lease. (Should it have taken the lease an instant
    /// before, it releases and takes it again: nobody leads meanwhile.) Returns `false` if no
    /// loop runs any more.
    async fn restart(&mut self, lease: &str, timeout: Duration) -> bool {
        self.restarts += 1;
        let Some(mut task) = self.task.take() else {
            // Unit tests: nothing to restart.
            return self.rebuild.is_none();
        };
        // Swapping in a receiver whose sender is gone drops the crate's only receiver, which
        // ends its loop; if the restart fails below, `changed()` then reports the end.
        let (_, closed) = watch::channel(false);
        drop(std::mem::replace(&mut self.state, closed));
        let manager = match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(Ok(manager))) => Some(manager),
            Ok(Ok(Err(e))) => {
                tracing::warn!(%lease, error = %e, "restarting the lease manager: it ended with an error; building a new one");
                None
            }
            Ok(Err(e)) => {
                tracing::warn!(%lease, error = %e, "restarting the lease manager: its task failed; building a new one");
                None
            }
            Err(_) => {
                // Stop it before a new manager with the same identity starts: the old one
                // must not clear a lease the new one has just taken.
                task.abort();
                let _ = task.await;
                tracing::warn!(%lease, ?timeout, "restarting the lease manager: it did not stop in time; building a new one");
                None
            }
        };
        let manager = match manager {
            Some(manager) => manager,
            None => {
                let Some((client, config)) = &self.rebuild else {
                    return false;
                };
                match build_manager(client, config).await {
                    Ok(manager) => manager,
                    Err(e) => {
                        tracing::error!(%lease, error = %e, "could not restart the lease manager");
                        return false;
                    }
                }
            }
        };
        let (state, task) = manager.watch().await;
        self.state = state;
        self.task = Some(task);
        true
    }
}

/// This replica's part in the election, from [`elect`].
///
/// Dropping it leaves the election: the lease is released in the background (if the runtime
/// keeps running long enough; otherwise it expires after its term). Prefer
/// [`Leadership::release`] on a graceful shutdown to know the handover happened.
#[derive(Debug)]
pub struct Leadership {
    lease: String,
    identity: String,
    state: watch::Receiver<bool>,
    // Dropping the sender stops the guard just like sending: this is what makes a plain drop
    // release the lease.
    stop: oneshot::Sender<()>,
    /// The guard; it ends with the crate's campaign, whose loop then releases the lease.
    supervisor: JoinHandle<Campaign>,
    release_timeout: Duration,
}

impl Leadership {
    /// Whether this replica leads right now. Writers should check it (or follow
    /// [`Leadership::subscribe`]) and stop writing as soon as it turns `false`.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Waits until this replica leads (returns at once if it does).
    ///
    /// # Errors
    /// [`LeaderError::Stopped`] if the election ended, so leadership can never come.
    pub async fn wait_until_leader(&mut self) -> Result<(), LeaderError> {
        self.wait_for(true).await
    }

    /// Waits until this replica no longer leads (returns at once if it does not): lost to
    /// another replica, or stepped down because renewals were not seen in time.
    ///
    /// # Errors
    /// [`LeaderError::Stopped`] if the election ended (this replica is then not leader).
    pub async fn wait_until_not_leader(&mut self) -> Result<(), LeaderError> {
        self.wait_for(false).await
    }

    async fn wait_for(&mut self, leader: bool) -> Result<(), LeaderError> {
        self.state
            .wait_for(|v| *v == leader)
            .await
            .map(drop)
            .map_err(|_| LeaderError::Stopped {
                lease: self.lease.clone(),
            })
    }

    /// A receiver of leadership changes (`true` while leader). Holding it does not keep the
    /// election alive: once the [`Leadership`] is dropped or released it reads `false` and then
    /// reports the channel closed.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// `namespace/name` of the Lease.
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Leaves the election and, if this replica holds the lease, clears the holder so another
    /// replica can take it without waiting for expiry. Leadership is reported lost before the
    /// Lease is written, so writers stop first. Waits at most one lease term.
    ///
    /// # Errors
    /// [`LeaderError::Release`] or [`LeaderError::ReleaseTimedOut`]: the lease could not be
    /// cleared and will expire instead. Either way this replica no longer leads.
    pub async fn release(self) -> Result<(), LeaderError> {
        let Leadership {
            lease,
            stop,
            supervisor,
            release_timeout,
            ..
        } = self;
        let _ = stop.send(());
        // The guard publishes `false` and drops the crate's receiver, which makes the crate's
        // task clear the holder and end.
        let manager = match supervisor.await {
            Ok(Campaign {
                task: Some(task), ..
            }) => task,
            // No loop left (it could not be restarted): nothing holds the lease.
            Ok(_) => return Ok(()),
            Err(join) => {
                return Err(LeaderError::Release {
                    lease,
                    reason: join.to_string(),
                });
            }
        };
        match tokio::time::timeout(release_timeout, manager).await {
            Ok(Ok(Ok(_manager))) => {
                tracing::info!(%lease, "left leader election");
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(LeaderError::Release {
                lease,
                reason: e.to_string(),
            }),
            Ok(Err(join)) => Err(LeaderError::Release {
                lease,
                reason: join.to_string(),
            }),
            Err(_) => Err(LeaderError::ReleaseTimedOut {
                lease,
                waited: release_timeout,
            }),
        }
    }
}

/// Publishes the leadership the rest of the host sees: the crate's verdict, vetoed when this
/// replica's renewal was not seen on the Lease in time (see the module docs).
struct Guard {
    lease: String,
    identity: String,
    /// Taken off the lease's expiry: we step down this long before others may take over.
    margin: Duration,
    /// How long a restart of the crate's loop may take (one lease term).
    restart_timeout: Duration,
}

impl Guard {
    /// When our current term ends by the Lease object, minus the margin; `None` if the Lease
    /// does not name us holder. The Lease holds wall-clock times, the timer needs an `Instant`.
    fn valid_until(&self, lease: &Lease) -> Option<Instant> {
        let spec = lease.spec.as_ref()?;
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return None;
        }
        let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
        let term = Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?);
        let end = renewed + term.saturating_sub(self.margin);
        let left = end
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Some(Instant::now() + left)
    }

    /// Whether `lease` is free: nobody holds it (released, or never taken).
    fn released(lease: &Lease) -> bool {
        lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .is_none_or(|h| h.is_empty())
    }

    async fn run<S>(
        self,
        mut campaign: Campaign,
        events: S,
        out: watch::Sender<bool>,
        mut stop: oneshot::Receiver<()>,
    ) -> Campaign
    where
        S: Stream<Item = Result<watcher::Event<Lease>, watcher::Error>> + Send,
    {
        let lease = &self.lease;
        let mut events = std::pin::pin!(events);
        let mut events_done = false;
        let mut manager_says = *campaign.state.borrow_and_update();
        // End of our term as last seen on the Lease (minus the margin).
        let mut valid_until: Option<Instant> = None;
        // During a (re)list: what the list has shown so far. Applied at `InitDone` only, so a
        // relist does not flap leadership while it runs.
        let mut relist: Option<Option<Instant>> = None;

        loop {
            let seen_renewed = valid_until.is_some_and(|t| Instant::now() < t);
            let leader = manager_says && seen_renewed;
            let was_leader = out.send_replace(leader);
            if leader && !was_leader {
                tracing::info!(%lease, identity = %self.identity, "became leader");
            } else if was_leader && !leader {
                if manager_says {
                    tracing::warn!(
                        %lease,
                        identity = %self.identity,
                        "stepping down: the lease renewal was not seen in time (API server unreachable?)"
                    );
                } else {
                    tracing::warn!(%lease, identity = %self.identity, "lost leadership");
                }
            }
            let deadline = valid_until.filter(|_| leader);
            // Set when the watch shows the lease just released.
            let mut free = false;

            tokio::select! {
                // Sent or sender dropped: either way leave.
                _ = &mut stop => break,
                changed = campaign.state.changed() => match changed {
                    Ok(()) => manager_says = *campaign.state.borrow_and_update(),
                    Err(_) => {
                        tracing::error!(%lease, "the lease manager task ended; leaving the election");
                        break;
                    }
                },
                event = events.next(), if !events_done => match event {
                    Some(Ok(watcher::Event::Apply(l))) => {
                        valid_until = self.valid_until(&l);
                        free = Self::released(&l);
                    }
                    Some(Ok(watcher::Event::Delete(_))) => valid_until = None,
                    Some(Ok(watcher::Event::Init)) => relist = Some(None),
                    // Not `free` on a (re)list: the crate's loop reads the Lease when it starts,
                    // and a relist is no news of a release.
                    Some(Ok(watcher::Event::InitApply(l))) => relist = Some(self.valid_until(&l)),
                    Some(Ok(watcher::Event::InitDone)) => valid_until = relist.take().flatten(),
                    Some(Err(e)) => {
                        // The watcher retries with back-off; meanwhile the deadline protects us.
                        tracing::warn!(%lease, error = %e, "watching the Lease failed; retrying");
                    }
                    None => {
                        tracing::error!(%lease, "the Lease watch ended; leadership will lapse at the end of the term");
                        events_done = true;
                    }
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            }
            // A waiting replica's crate loop sleeps until the term it last read ends; wake it
            // so that it takes the released lease now. Never while the crate says we hold the
            // lease: ending its loop would release it.
            if free && !manager_says {
                tracing::info!(%lease, identity = %self.identity, "the lease was released: trying to take it now");
                if !campaign.restart(lease, self.restart_timeout).await {
                    tracing::error!(%lease, "the lease manager could not be restarted; leaving the election");
                    break;
                }
                manager_says = *campaign.state.borrow_and_update();
            }
        }
        if out.send_replace(false) {
            tracing::info!(%lease, identity = %self.identity, "no longer leader: leaving the election");
        }
        // Dropping the crate's only receiver ends its loop, which releases the lease if held.
        let (_, closed) = watch::channel(false);
        drop(std::mem::replace(&mut campaign.state, closed));
        campaign
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    type Events = mpsc::UnboundedSender<Result<watcher::Event<Lease>, watcher::Error>>;

    fn lease_held_by(holder: &str, renewed: SystemTime, duration_secs: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                renew_time: Some(MicroTime(renewed.try_into().unwrap())),
                lease_duration_seconds: Some(duration_secs),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    struct Harness {
        manager: watch::Sender<bool>,
        events: Events,
        out: watch::Receiver<bool>,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<Campaign>,
    }

    /// A guard for identity "me" with a 1 s margin (grace 2 s), fed by hand.
    fn harness() -> Harness {
        let (manager, manager_rx) = watch::channel(false);
        let (events, events_rx) = mpsc::unbounded();
        let (out_tx, out) = watch::channel(false);
        let (stop, stop_rx) = oneshot::channel();
        let guard = Guard {
            lease: "liqo/liqo-host".into(),
            identity: "me".into(),
            margin: Duration::from_secs(1),
            restart_timeout: Duration::from_secs(5),
        };
        let campaign = Campaign {
            state: manager_rx,
            task: None,
            rebuild: None,
            restarts: 0,
        };
        let task = tokio::spawn(guard.run(campaign, events_rx, out_tx, stop_rx));
        Harness {
            manager,
            events,
            out,
            stop: Some(stop),
            task,
        }
    }

    impl Harness {
        fn apply(&self, lease: Lease) {
            self.events
                .unbounded_send(Ok(watcher::Event::Apply(lease)))
                .unwrap();
        }
        async fn settle(&self) {
            // Let the guard task process what was sent (time is paused: no real waiting).
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        fn leader(&self) -> bool {
            *self.out.borrow()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn leader_needs_both_the_manager_and_a_seen_renewal() {
        let h = harness();
        h.manager.send_replace(true);
        h.settle().await;
        assert!(!h.leader(), "no renewal seen yet");
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
        h.manager.send_replace(false);
        h.settle().await;
        assert!(!h.leader(), "the manager lost the lease");
    }

    #[tokio::test(start_paused = true)]
    async fn leader_steps_down_without_renewal_and_recovers_on_renewal() {
        let h = harness();
        h.manager.send_replace(true);
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
        // Term 5 s minus 1 s margin: still leader after 3.5 s, not after 4.5 s.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert!(h.leader());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !h.leader(),
            "no renewal seen: must step down before the term ends"
        );
        // A renewal shows up (the API server is back): leader again.
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
    }

    #[tokio::test(start_paused = true)]
    async fn leader_lost_when_the_lease_names_another_holder_or_is_deleted() {
        let h = harness();
        h.manager.send_replace(true);
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
        h.apply(lease_held_by("other", SystemTime::now(), 5));
        h.settle().await;
        assert!(!h.leader());
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
        h.events
            .unbounded_send(Ok(watcher::Event::Delete(Lease::default())))
            .unwrap();
        h.settle().await;
        assert!(!h.leader());
    }

    #[tokio::test(start_paused = true)]
    async fn leader_relist_applies_at_init_done_only() {
        let h = harness();
        h.manager.send_replace(true);
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
        // A relist that finds no Lease: leadership stays until the list is complete.
        h.events.unbounded_send(Ok(watcher::Event::Init)).unwrap();
        h.settle().await;
        assert!(h.leader(), "no flapping while the relist runs");
        h.events
            .unbounded_send(Ok(watcher::Event::InitDone))
            .unwrap();
        h.settle().await;
        assert!(!h.leader());
        // A relist that finds our renewed Lease.
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(lease_held_by("me", SystemTime::now(), 5)),
            watcher::Event::InitDone,
        ] {
            h.events.unbounded_send(Ok(event)).unwrap();
        }
        h.settle().await;
        assert!(h.leader());
    }

    #[tokio::test(start_paused = true)]
    async fn leader_stop_reports_false_and_drops_the_manager_receiver() {
        let mut h = harness();
        h.manager.send_replace(true);
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
        h.stop.take().unwrap().send(()).unwrap();
        (&mut h.task).await.unwrap();
        assert!(!h.leader());
        // The crate's task watches for this to release the lease.
        assert!(h.manager.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn leader_released_lease_wakes_a_waiting_campaign_only() {
        let mut h = harness();
        let free = Lease {
            spec: Some(LeaseSpec::default()),
            ..Default::default()
        };
        // Waiting: another replica holds the lease, then releases it.
        h.apply(lease_held_by("other", SystemTime::now(), 5));
        h.settle().await;
        h.apply(free.clone());
        h.settle().await;
        // Leading: a lease seen free must not restart the campaign (that would release it).
        h.manager.send_replace(true);
        h.apply(lease_held_by("me", SystemTime::now(), 5));
        h.settle().await;
        assert!(h.leader());
        h.apply(free);
        h.settle().await;
        assert!(!h.leader(), "the lease no longer names us");
        h.stop.take().unwrap().send(()).unwrap();
        let campaign = (&mut h.task).await.unwrap();
        assert_eq!(campaign.restarts, 1, "restarted once, while waiting");
    }

    #[test]
    fn leader_config_defaults_and_validation() {
        let config = LeaderConfig::default();
        assert_eq!(config.lease(), "liqo/liqo-host");
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert_eq!(config.grace, Duration::from_secs(5));
        assert!(!config.identity.is_empty());
        config.validate().unwrap();

        let bad = |f: fn(&mut LeaderConfig)| {
            let mut c = LeaderConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.grace = Duration::from_secs(15)).contains("shorter"));
        assert!(bad(|c| c.lease_duration = Duration::from_millis(2500)).contains("whole"));
        assert!(bad(|c| c.grace = Duration::ZERO).contains("grace"));
        assert!(bad(|c| c.identity = " ".into()).contains("identity"));
        assert!(bad(|c| c.namespace = String::new()).contains("Lease /liqo-host"));
    }

    #[test]
    fn leader_errors_name_the_lease_and_the_fix() {
        let config = LeaderConfig::default();
        let status = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..Default::default()
            }))
        };
        let missing = classify(&config, &status(404, "namespaces \"liqo\" not found")).to_string();
        assert!(missing.contains("Lease liqo/liqo-host"), "{missing}");
        assert!(
            missing.contains("create namespace liqo or run liqoctl install"),
            "{missing}"
        );
        let forbidden = classify(&config, &status(403, "leases is forbidden")).to_string();
        assert!(forbidden.contains("Lease liqo/liqo-host"), "{forbidden}");
        assert!(
            forbidden.contains("leases.coordination.k8s.io in namespace liqo"),
            "{forbidden}"
        );
    }

    #[test]
    fn leader_field_manager_is_unique_and_bounded() {
        assert_eq!(field_manager("pod-a"), "liqo-host-pod-a");
        let long_a = "a".repeat(200);
        let long_b = format!("{}b", "a".repeat(199));
        assert!(field_manager(&long_a).len() <= 128);
        assert_ne!(field_manager(&long_a), field_manager(&long_b));
    }
}
