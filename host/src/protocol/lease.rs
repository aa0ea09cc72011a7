//! The peering Lease: the consumer claims and renews it through its peering credential, the
//! provider reads it by its own clock and revokes the identity when it goes stale or is
//! released. The Lease is also the parameter of the consumer's admission policy binding (see
//! [`crate::tenant`]).

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::wire::{LEASE_NAME, TOKEN_EXPIRATION_ANNOTATION};

/// How long a renewal keeps the Lease fresh; the consumer renews every 10 seconds.
pub const LEASE_DURATION_SECONDS: i32 = 90;

fn micro_time(t: Timestamp) -> serde_json::Value {
    // MicroTime is RFC 3339 with exactly six fractional digits.
    json!(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

/// Claims or renews the consumer's Lease on the provider (through the peering credential):
/// holder `consumer_id`, renewed now. Claiming an identity someone else holds is refused by the
/// provider's tenant policy.
pub async fn renew_lease(peer: &Client, tenant: &str, consumer_id: &str) -> kube::Result<Lease> {
    renew_lease_announcing(peer, tenant, consumer_id, json!({})).await
}

/// Like [`renew_lease`], also writing `annotations` (a JSON merge patch of the Lease's
/// annotations; the tenant policy lets a consumer change only its announcements: the two
/// `gateway.liqo.io/*` ones, see [`crate::transport`], and its declared endpoint ranges, see
/// [`crate::protocol::endpoint_ranges`]).
pub async fn renew_lease_announcing(
    peer: &Client,
    tenant: &str,
    consumer_id: &str,
    annotations: serde_json::Value,
) -> kube::Result<Lease> {
    let mut patch = json!({"spec": {
        "holderIdentity": consumer_id,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": micro_time(Timestamp::now()),
    }});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        patch["metadata"] = json!({"annotations": annotations});
    }
    Api::<Lease>::namespaced(peer.clone(), tenant)
        .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// How the tenant admission policy (`deploy/peering/policies.yaml`) begins its refusal of a
/// Lease annotation: a provider older than an announcement refuses it with these words.
pub const LEASE_ANNOTATIONS_REFUSED: &str =
    "the annotations of a peering Lease belong to the provider";

/// Releases the consumer's Lease (on unpeer): the renew time goes back to the epoch, so the
/// provider sees it expired long ago and revokes the identity at once. (A Lease cannot be
/// deleted by the consumer, and its duration must stay positive.)
pub async fn release_lease(peer: &Client, tenant: &str) -> kube::Result<Lease> {
    Api::<Lease>::namespaced(peer.clone(), tenant)
        .patch(
            LEASE_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": micro_time(Timestamp::UNIX_EPOCH)}})),
        )
        .await
}

/// The state of one peering Lease, as the provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Nobody claimed the identity; it is revoked once the peer command expires.
    Unclaimed {
        /// Whether the peer command has expired.
        expired: bool,
    },
    /// Claimed by `consumer` and renewed recently.
    Fresh {
        /// The consumer's cluster id.
        consumer: String,
    },
    /// Claimed, not renewed in time; revoked once `revoke` is true.
    Stale {
        /// The consumer's cluster id.
        consumer: String,
        /// Whether the grace period has passed too.
        revoke: bool,
    },
}

/// When the provider saw each tenant's Lease renewed, by its own clock: a consumer writes the
/// renew time, so a renew time in the future (or one that never changes) must not keep a
/// Lease fresh. A renewal counts from when a new renew time was first seen here, or from the
/// renew time itself when that is earlier (after a restart of this host, a Lease renewed
/// before is not taken as renewed now).
#[derive(Debug, Default)]
pub struct RenewalClock {
    seen: std::collections::HashMap<String, (Option<i64>, i64)>,
}

impl RenewalClock {
    /// The time (seconds) `tenant`'s Lease counts as renewed at, given its renew time now.
    pub fn renewed_at(&mut self, tenant: &str, renew_time: Option<i64>, now: i64) -> i64 {
        let first_seen = match self.seen.get(tenant) {
            Some((value, at)) if *value == renew_time => *at,
            _ => {
                self.seen.insert(tenant.to_string(), (renew_time, now));
                now
            }
        };
        renew_time.map_or(0, |t| t.min(first_seen))
    }

    /// Forgets tenants that are gone.
    pub fn retain(&mut self, tenants: &HashSet<String>) {
        self.seen.retain(|t, _| tenants.contains(t));
    }
}

/// Classifies `lease` at `now` (seconds since the epoch) with revocation grace `grace`, the
/// Lease counting as renewed at `renewed` (see [`RenewalClock`]). The duration is always
/// [`LEASE_DURATION_SECONDS`]: the consumer cannot lengthen it.
pub fn lease_state(lease: &Lease, renewed: i64, now: i64, grace: Duration) -> LeaseState {
    let spec = lease.spec.clone().unwrap_or_default();
    let consumer = spec.holder_identity.unwrap_or_default();
    if consumer.is_empty() {
        let expired = lease
            .annotations()
            .get(TOKEN_EXPIRATION_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|t| t.as_second() <= now);
        return LeaseState::Unclaimed { expired };
    }
    let valid_until = renewed + i64::from(LEASE_DURATION_SECONDS);
    if now < valid_until {
        LeaseState::Fresh { consumer }
    } else {
        LeaseState::Stale {
            consumer,
            revoke: now >= valid_until + grace.as_secs() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use std::collections::BTreeMap;

    #[test]
    fn the_policy_refuses_lease_annotations_in_the_words_the_host_recognises() {
        let policies = include_str!("../../../deploy/peering/policies.yaml");
        // The message is a folded YAML scalar: compare with the line breaks as spaces.
        let folded = policies.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            folded.contains(LEASE_ANNOTATIONS_REFUSED),
            "deploy/peering/policies.yaml no longer says {LEASE_ANNOTATIONS_REFUSED:?}"
        );
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(Into::into),
                lease_duration_seconds: Some(90),
                renew_time: renewed.map(|s| MicroTime(Timestamp::from_second(s).unwrap())),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn lease_states() {
        let grace = Duration::from_secs(60);
        let fresh = lease(Some("london"), Some(1000));
        assert_eq!(
            lease_state(&fresh, 1000, 1089, grace),
            LeaseState::Fresh {
                consumer: "london".into()
            }
        );
        assert_eq!(
            lease_state(&fresh, 1000, 1090, grace),
            LeaseState::Stale {
                consumer: "london".into(),
                revoke: false
            }
        );
        assert_eq!(
            lease_state(&fresh, 1000, 1150, grace),
            LeaseState::Stale {
                consumer: "london".into(),
                revoke: true
            }
        );
        // A lease duration the consumer lengthened is not honoured.
        let mut long = lease(Some("london"), Some(1000));
        long.spec.as_mut().unwrap().lease_duration_seconds = Some(1_000_000);
        assert!(matches!(
            lease_state(&long, 1000, 1150, grace),
            LeaseState::Stale { revoke: true, .. }
        ));
        // Released: renew time at the epoch.
        assert!(matches!(
            lease_state(&lease(Some("london"), Some(0)), 0, 1000, grace),
            LeaseState::Stale { revoke: true, .. }
        ));
        let mut unclaimed = lease(None, None);
        assert_eq!(
            lease_state(&unclaimed, 0, 1000, grace),
            LeaseState::Unclaimed { expired: false }
        );
        unclaimed.metadata.annotations = Some(BTreeMap::from([(
            TOKEN_EXPIRATION_ANNOTATION.to_string(),
            Timestamp::from_second(999).unwrap().to_string(),
        )]));
        assert_eq!(
            lease_state(&unclaimed, 0, 1000, grace),
            LeaseState::Unclaimed { expired: true }
        );
    }

    #[test]
    fn renewals_count_by_the_providers_clock() {
        let mut clock = RenewalClock::default();
        // A renewal seen now counts from its own time when that is earlier...
        assert_eq!(clock.renewed_at("t", Some(990), 1000), 990);
        // ...and unchanged, stays at it.
        assert_eq!(clock.renewed_at("t", Some(990), 1100), 990);
        // A renew time in 2099 counts from when it was first seen, and does not move on.
        let future = 4_070_908_800;
        assert_eq!(clock.renewed_at("t", Some(future), 1200), 1200);
        assert_eq!(clock.renewed_at("t", Some(future), 5000), 1200);
        // A new value is a new renewal.
        assert_eq!(clock.renewed_at("t", Some(future + 1), 5000), 5000);
        // Released, or never renewed.
        assert_eq!(clock.renewed_at("t", Some(0), 6000), 0);
        assert_eq!(clock.renewed_at("u", None, 6000), 0);
        clock.retain(&HashSet::from(["u".to_string()]));
        assert_eq!(clock.renewed_at("t", Some(5500), 7000), 5500);
    }

    #[test]
    fn micro_time_has_six_digits() {
        let v = micro_time(Timestamp::UNIX_EPOCH);
        assert_eq!(v, json!("1970-01-01T00:00:00.000000Z"));
    }
}
