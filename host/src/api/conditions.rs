//! Conditions shared by the kinds: the `True`/`False`/`Unknown` status, the condition types,
//! reasons and statuses as constants, and [`upsert_condition`], which keeps
//! `lastTransitionTime` stable when a status does not change; and [`apply_status`], the one
//! way the host writes the status of its kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};
use kube::api::{Api, Patch, PatchParams};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::api::wire;

/// `ReflectionPlugin` condition type: the plugin was fetched, verified and compiled, and its
/// manifest accepted.
pub const CONDITION_LOADED: &str = "Loaded";

/// Status of a condition whose value is true (metav1 convention).
pub const STATUS_TRUE: &str = "True";
/// Status of a condition whose value is false (metav1 convention).
pub const STATUS_FALSE: &str = "False";
/// Status of a condition whose value is not known yet (metav1 convention).
pub const STATUS_UNKNOWN: &str = "Unknown";

/// `Loaded` reason: the plugin is loaded and serves its kinds.
pub const REASON_LOADED: &str = "Loaded";
/// `Loaded` reason: the plugin bytes could not be read (missing ConfigMap, key, file or URL).
pub const REASON_SOURCE_UNAVAILABLE: &str = "SourceUnavailable";
/// `Loaded` reason: the downloaded bytes do not match `spec.source.url.sha256`.
pub const REASON_DIGEST_MISMATCH: &str = "DigestMismatch";
/// `Loaded` reason: the bytes are not a valid component, or its manifest was rejected.
pub const REASON_INVALID_PLUGIN: &str = "InvalidPlugin";

/// `OffloadingRequired` reason (Liqo): the peer matches the `clusterSelector`.
pub const REASON_CLUSTER_SELECTED: &str = "ClusterSelected";
/// `OffloadingRequired` reason (Liqo): the peer does not match the `clusterSelector`.
pub const REASON_CLUSTER_NOT_SELECTED: &str = "ClusterNotSelected";
/// `Ready` reason (Liqo): the remote namespace exists and is ours.
pub const REASON_NAMESPACE_CREATED: &str = "NamespaceCreated";
/// `Ready` reason (Liqo): the remote namespace is being created.
pub const REASON_CREATING: &str = "Creating";
/// `Ready` reason (Liqo): creating the remote namespace keeps failing; retried with backoff.
pub const REASON_CREATION_LOOP_BACKOFF: &str = "CreationLoopBackOff";
/// `Ready` reason (Liqo): the remote namespace is being deleted.
pub const REASON_TERMINATING: &str = "Terminating";

/// Status of a `True`/`False`/`Unknown` condition, as in `metav1.ConditionStatus`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Whether the condition holds is not known yet.
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The status as written in YAML (`True`, `False`, `Unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => STATUS_TRUE,
            Self::False => STATUS_FALSE,
            Self::Unknown => STATUS_UNKNOWN,
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// A condition that [`upsert_condition`] can maintain in a list: it has a type (the list key),
/// a status, and a `lastTransitionTime`.
pub trait ConditionLike {
    /// Whether `self` and `other` have the same type (so one replaces the other in a list).
    fn same_type(&self, other: &Self) -> bool;
    /// Whether `self` and `other` have the same status.
    fn same_status(&self, other: &Self) -> bool;
    /// The time the status last changed.
    fn last_transition_time(&self) -> Option<&Time>;
    /// Sets the time the status last changed.
    fn set_last_transition_time(&mut self, time: Time);
}

impl ConditionLike for MetaCondition {
    fn same_type(&self, other: &Self) -> bool {
        self.type_ == other.type_
    }
    fn same_status(&self, other: &Self) -> bool {
        self.status == other.status
    }
    fn last_transition_time(&self) -> Option<&Time> {
        Some(&self.last_transition_time)
    }
    fn set_last_transition_time(&mut self, time: Time) {
        self.last_transition_time = time;
    }
}

/// Inserts `condition` into `conditions`, replacing the condition of the same type.
///
/// `lastTransitionTime` follows the Kubernetes convention: when a condition of the same type
/// with the same status is already present, its `lastTransitionTime` is kept (only reason,
/// message and the other fields are updated); otherwise it is set to `now`. Whatever
/// `lastTransitionTime` `condition` carries is ignored.
///
/// Returns whether the list changed, so callers can skip a status write that would change
/// nothing.
pub fn upsert_condition<C>(conditions: &mut Vec<C>, mut condition: C, now: Time) -> bool
where
    C: ConditionLike + PartialEq,
{
    match conditions.iter_mut().find(|c| c.same_type(&condition)) {
        Some(existing) => {
            let time = match existing.last_transition_time() {
                Some(previous) if existing.same_status(&condition) => previous.clone(),
                _ => now,
            };
            condition.set_last_transition_time(time);
            if *existing == condition {
                false
            } else {
                *existing = condition;
                true
            }
        }
        None => {
            condition.set_last_transition_time(now);
            conditions.push(condition);
            true
        }
    }
}

/// The current time as a Kubernetes [`Time`] (second precision once serialized).
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The body of a server-side apply of a `K`'s status: its `apiVersion`, its `kind` and
/// `status`, nothing else, so the apply owns exactly the status.
fn status_apply_body<K>(status: &impl Serialize) -> serde_json::Value
where
    K: kube::Resource<DynamicType = ()>,
{
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

/// Writes `status` as the status of the object `name` of `api`: a server-side apply with the
/// reflection's field manager, forced, as the host owns the status of the kinds it serves.
/// Whether the status changed at all is the caller's to check: what counts as a change
/// differs per kind (transition times, for example).
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> kube::Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(
        name,
        &PatchParams::apply(wire::REFLECTION_FIELD_MANAGER).force(),
        &Patch::Apply(status_apply_body::<K>(status)),
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_apply_body_names_the_kind_and_holds_only_the_status() {
        use crate::api::foreign_cluster::ForeignCluster;
        use crate::api::namespace_offloading::NamespaceOffloading;
        use crate::api::reflection_plugin::ReflectionPlugin;
        let status = serde_json::json!({"phase": "Ready"});
        assert_eq!(
            status_apply_body::<ForeignCluster>(&status),
            serde_json::json!({
                "apiVersion": "core.liqo.io/v1beta1",
                "kind": "ForeignCluster",
                "status": {"phase": "Ready"},
            })
        );
        assert_eq!(
            status_apply_body::<NamespaceOffloading>(&status)["apiVersion"],
            "offloading.liqo.io/v1beta1"
        );
        assert_eq!(
            status_apply_body::<NamespaceOffloading>(&status)["kind"],
            "NamespaceOffloading"
        );
        assert_eq!(
            status_apply_body::<ReflectionPlugin>(&status)["apiVersion"],
            "plugins.liqo.io/v1alpha1"
        );
        assert_eq!(
            status_apply_body::<ReflectionPlugin>(&status)["kind"],
            "ReflectionPlugin"
        );
    }

    fn time(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn loaded(status: &str, reason: &str, message: &str) -> MetaCondition {
        MetaCondition {
            type_: CONDITION_LOADED.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: time(0),
        }
    }

    #[test]
    fn inserts_a_new_condition_with_now() {
        let mut list = Vec::new();
        assert!(upsert_condition(
            &mut list,
            loaded(STATUS_TRUE, REASON_LOADED, "ok"),
            time(10)
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, time(10));
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let mut list = Vec::new();
        upsert_condition(
            &mut list,
            loaded(STATUS_TRUE, REASON_LOADED, "ok"),
            time(10),
        );
        let changed = upsert_condition(
            &mut list,
            loaded(STATUS_TRUE, REASON_LOADED, "ok, reloaded"),
            time(20),
        );
        assert!(changed, "the message changed");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].message, "ok, reloaded");
        assert_eq!(list[0].last_transition_time, time(10));
    }

    #[test]
    fn moves_transition_time_when_status_changes() {
        let mut list = Vec::new();
        upsert_condition(
            &mut list,
            loaded(STATUS_TRUE, REASON_LOADED, "ok"),
            time(10),
        );
        upsert_condition(
            &mut list,
            loaded(STATUS_FALSE, REASON_DIGEST_MISMATCH, "bad digest"),
            time(20),
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, STATUS_FALSE);
        assert_eq!(list[0].last_transition_time, time(20));
    }

    #[test]
    fn reports_no_change_for_an_identical_condition() {
        let mut list = Vec::new();
        upsert_condition(
            &mut list,
            loaded(STATUS_TRUE, REASON_LOADED, "ok"),
            time(10),
        );
        let before = list.clone();
        assert!(!upsert_condition(
            &mut list,
            loaded(STATUS_TRUE, REASON_LOADED, "ok"),
            time(30)
        ));
        assert_eq!(list, before);
    }

    #[test]
    fn other_types_are_left_alone() {
        let mut list = vec![MetaCondition {
            type_: "Other".into(),
            ..loaded(STATUS_FALSE, "Why", "because")
        }];
        upsert_condition(
            &mut list,
            loaded(STATUS_TRUE, REASON_LOADED, "ok"),
            time(10),
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].type_, "Other");
        assert_eq!(list[0].last_transition_time, time(0));
    }

    #[test]
    fn condition_status_strings() {
        assert_eq!(ConditionStatus::from(true).as_str(), "True");
        assert_eq!(ConditionStatus::from(false).as_str(), "False");
        assert_eq!(
            serde_json::to_string(&ConditionStatus::Unknown).unwrap(),
            "\"Unknown\""
        );
    }
}
