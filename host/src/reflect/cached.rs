//! The form in which the engine's caches hold objects.
//!
//! A `DynamicObject` keeps its body as a `serde_json::Value` tree: every map is a B-tree node
//! sized for eleven entries and every string its own allocation, about 4.8 KB for a 1 KB
//! Service. With 10 000 Services and their slices cached locally and as remote copies, that
//! tree was most of the host's memory. A [`CachedObject`] keeps the object as its compact JSON
//! text (about 0.8 KB) plus the few fields the engine reads on every pass, and parses the text
//! only when a pass needs the body: to hand it to a plugin (which takes JSON text anyway) or to
//! compare a remote copy with the intent.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::kind_rules::KindRules;
use crate::api::wire;

/// An object in a cache: its identity fields, the labels that decide ownership, and the rest as
/// JSON text.
#[derive(Clone, Debug)]
pub(crate) struct CachedObject {
    /// Only `name`, `namespace`, `uid`, `resourceVersion` and `deletionTimestamp` are set: the
    /// store indexes by name and namespace, and passes read the others. Everything else of the
    /// metadata is in [`CachedObject::text`].
    metadata: ObjectMeta,
    /// The values of the labels [`CachedObject::is_owned`] tests.
    origin: Option<Box<str>>,
    destination: Option<Box<str>>,
    slice_manager: Option<Box<str>>,
    /// The whole object as a JSON object's text, without `apiVersion`, `kind` (a list's items
    /// may lack them; the cache knows its resource) and `metadata.managedFields` (nothing here
    /// reads them, and they are most of an object's size).
    text: Box<str>,
}

impl CachedObject {
    /// Builds the cached form of an object as the API server returns it.
    pub fn from_value(value: Value) -> Result<Self, String> {
        let Value::Object(mut map) = value else {
            return Err("not a JSON object".into());
        };
        map.remove("apiVersion");
        map.remove("kind");
        let meta = map
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or("no metadata")?;
        meta.remove("managedFields");
        let text_field = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        // The store indexes by name (kube-runtime panics on an object without one).
        if text_field("name").is_none_or(|n| n.is_empty()) {
            return Err("no metadata.name".into());
        }
        let deletion_timestamp = match meta.get("deletionTimestamp") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value::<Time>(v.clone())
                    .map_err(|e| format!("metadata.deletionTimestamp: {e}"))?,
            ),
        };
        let metadata = ObjectMeta {
            name: text_field("name"),
            namespace: text_field("namespace"),
            uid: text_field("uid"),
            resource_version: text_field("resourceVersion"),
            deletion_timestamp,
            ..ObjectMeta::default()
        };
        let label = |key: &str| {
            meta.get("labels")
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
                .map(Box::from)
        };
        let origin = label(wire::ORIGIN);
        let destination = label(wire::DESTINATION);
        let slice_manager = label(wire::ENDPOINTSLICE_MANAGED_BY);
        let text = Value::Object(map).to_string().into_boxed_str();
        Ok(Self {
            metadata,
            origin,
            destination,
            slice_manager,
            text,
        })
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// The object's namespace (none for cluster-scoped objects).
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    /// The object's UID.
    pub fn uid(&self) -> Option<&str> {
        self.metadata.uid.as_deref()
    }

    /// The object's resourceVersion.
    pub fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }

    /// True when the object is being deleted (it has a deletionTimestamp).
    pub fn is_deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }

    /// Liqo's ownership test: both reflection labels with this peering's values. Kinds whose
    /// `rules` say so (EndpointSlices) need one more proof, because the remote EndpointSlice
    /// controller copies a Service's labels (ours included) onto the slices it manages: only
    /// objects marked as managed by reflection are ours.
    pub(crate) fn is_owned(&self, rules: KindRules, local: &str, peer: &str) -> bool {
        crate::api::ownership::OwnershipLabels {
            origin: self.origin.as_deref(),
            destination: self.destination.as_deref(),
            managed_by: self.slice_manager.as_deref(),
        }
        .prove(local, peer, rules.owned_only_if_managed_by_reflection)
    }

    /// The whole object as JSON text, with the `apiVersion` and `kind` of `resource` (the
    /// text a plugin receives).
    pub fn json(&self, resource: &ApiResource) -> String {
        let head = format!(
            "{{\"apiVersion\":{},\"kind\":{}",
            Value::String(resource.api_version.clone()),
            Value::String(resource.kind.clone())
        );
        // `text` is a serialized JSON object that always has `metadata` (`from_value` refuses
        // objects without it), so it is `{` followed by at least one field.
        debug_assert!(
            self.text.starts_with("{\""),
            "cached text is not a JSON object"
        );
        let mut out = String::with_capacity(head.len() + self.text.len() + 1);
        out.push_str(&head);
        out.push(',');
        out.push_str(&self.text[1..]);
        out
    }

    /// The object as JSON text without `apiVersion` and `kind`, for readers that pick a few
    /// fields out of it without building the whole tree.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The whole object as a JSON value, with the `apiVersion` and `kind` of `resource`.
    pub fn value(&self, resource: &ApiResource) -> Value {
        let mut map: Map<String, Value> = serde_json::from_str(&self.text).unwrap_or_default();
        map.insert(
            "apiVersion".into(),
            Value::String(resource.api_version.clone()),
        );
        map.insert("kind".into(), Value::String(resource.kind.clone()));
        Value::Object(map)
    }
}

impl<'de> Deserialize<'de> for CachedObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Resource for CachedObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::GroupVersionKind;
    use serde_json::json;

    fn services() -> ApiResource {
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Service"), "services")
    }

    fn slices() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
            "endpointslices",
        )
    }

    fn service() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "flights", "namespace": "demo", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "flights"},
                "annotations": {"a": "1"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "clusterIP": "10.96.0.10"},
            "status": {"loadBalancer": {}}
        })
    }

    #[test]
    fn keeps_everything_but_managed_fields_and_restores_the_resource_types() {
        let cached: CachedObject = serde_json::from_value(service()).unwrap();
        assert_eq!(cached.name(), "flights");
        assert_eq!(cached.namespace(), Some("demo"));
        assert_eq!(cached.uid(), Some("u-1"));
        assert_eq!(cached.resource_version(), Some("42"));
        assert!(!cached.is_deleting());
        let mut expected = service();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert_eq!(cached.value(&services()), expected);
        let parsed: Value = serde_json::from_str(&cached.json(&services())).unwrap();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn a_list_item_without_types_gets_the_cache_resource_types() {
        let mut item = service();
        let map = item.as_object_mut().unwrap();
        map.remove("apiVersion");
        map.remove("kind");
        let cached: CachedObject = serde_json::from_value(item).unwrap();
        let parsed: Value = serde_json::from_str(&cached.json(&services())).unwrap();
        assert_eq!(parsed["apiVersion"], "v1");
        assert_eq!(parsed["kind"], "Service");
        assert_eq!(parsed["spec"]["clusterIP"], "10.96.0.10");
    }

    #[test]
    fn deletion_timestamp_is_kept() {
        let mut object = service();
        object["metadata"]["deletionTimestamp"] = json!("2026-11-26T10:00:00Z");
        let cached: CachedObject = serde_json::from_value(object).unwrap();
        assert!(cached.is_deleting());
    }

    #[test]
    fn ownership_follows_liqo_rules() {
        let ours = |extra: &[(&str, &str)]| {
            let mut l = Map::new();
            l.insert(wire::ORIGIN.into(), json!("london"));
            l.insert(wire::DESTINATION.into(), json!("newyork"));
            for (k, v) in extra {
                l.insert((*k).into(), json!(v));
            }
            Value::Object(l)
        };
        let cases = [
            // (labels, resource, owned by the peering london -> newyork)
            (ours(&[]), services(), true),
            (json!({wire::ORIGIN: "london"}), services(), false),
            (
                json!({wire::ORIGIN: "paris", wire::DESTINATION: "newyork"}),
                services(),
                false,
            ),
            // Our labels copied onto a slice by the remote EndpointSlice controller.
            (
                ours(&[(
                    wire::ENDPOINTSLICE_MANAGED_BY,
                    "endpointslice-controller.k8s.io",
                )]),
                slices(),
                false,
            ),
            (ours(&[]), slices(), false),
            (
                ours(&[(
                    wire::ENDPOINTSLICE_MANAGED_BY,
                    wire::ENDPOINTSLICE_MANAGED_BY_REFLECTION,
                )]),
                slices(),
                true,
            ),
        ];
        for (labels, resource, owned) in cases {
            let object = json!({"metadata": {"name": "x", "namespace": "n", "labels": labels}});
            let cached = CachedObject::from_value(object).unwrap();
            assert_eq!(
                cached.is_owned(
                    KindRules::of(&super::super::engine::kind_key(
                        &resource.group,
                        &resource.version,
                        &resource.kind
                    )),
                    "london",
                    "newyork"
                ),
                owned,
                "{labels} as {}",
                resource.kind
            );
        }
    }

    #[test]
    fn refuses_what_is_not_an_object_with_metadata() {
        assert!(CachedObject::from_value(json!([1])).is_err());
        assert!(CachedObject::from_value(json!({"spec": {}})).is_err());
        assert!(CachedObject::from_value(json!({"metadata": {"namespace": "n"}})).is_err());
    }
}
