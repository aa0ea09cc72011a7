//! `ReflectionPlugin` (`plugins.liqo.io/v1alpha1`): a user plugin that reflects one or more
//! kinds, loaded by the host from a ConfigMap, a URL pinned by digest, or a file, and swapped
//! without restarting the host.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::conditions::CONDITION_LOADED;

/// Default key of the ConfigMap entry holding the plugin (`binaryData`).
pub const DEFAULT_CONFIG_MAP_KEY: &str = "plugin.wasm";

/// A WebAssembly reflection plugin (a `wasm32-wasip2` component implementing the
/// `liqo:reflection` WIT world), with its configuration and resource limits.
// The printer columns repeat `type_`/`priority`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "plugins.liqo.io",
    version = "v1alpha1",
    kind = "ReflectionPlugin",
    plural = "reflectionplugins",
    status = "ReflectionPluginStatus",
    category = "liqo",
    derive = "PartialEq",
    doc = "ReflectionPlugin is a WebAssembly reflection plugin (a wasm32-wasip2 component implementing the liqo:reflection WIT world) that decides how the kinds it declares are reflected to peered clusters. The host loads it from a ConfigMap, a URL pinned by sha256, or a file, and swaps it without restarting.",
    printcolumn(
        name = "PLUGIN",
        type_ = "string",
        json_path = ".status.pluginName",
        description = "The name the plugin declares in its manifest."
    ),
    printcolumn(
        name = "VERSION",
        type_ = "string",
        json_path = ".status.pluginVersion",
        description = "The version the plugin declares in its manifest."
    ),
    printcolumn(
        name = "LOADED",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Loaded\")].status",
        description = "Whether the plugin is loaded and serving its kinds."
    ),
    printcolumn(
        name = "AGE",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ReflectionPluginSpec {
    /// Where the plugin's bytes come from: exactly one of `configMap`, `url` or `file`.
    pub source: PluginSource,

    /// The plugin's configuration: any JSON object, handed to the plugin on every call. What
    /// it may contain is documented by the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config: Option<serde_json::Value>,

    /// Resource limits: of one plugin call (a call over a limit fails only the object it was
    /// reflecting), and of all the plugin's instances together (a budget that does not fit in
    /// the host's memory fails the load).
    #[serde(default)]
    pub limits: ReflectionPluginLimits,

    /// What happens to an object whose plugin call fails (trap, limit, invalid output, error):
    /// `Fail` (default) keeps the object's remote copy as it last was, reports the error
    /// (Warning Event `FailedReflection` naming the plugin and the limit, metrics) and retries
    /// with backoff; `Ignore` treats the object as skipped: its remote copy is removed, with
    /// the same Event, and it is retried only when it changes. Other objects and other kinds
    /// are unaffected either way.
    #[serde(default)]
    pub failure_policy: FailurePolicy,

    /// Kinds the plugin may read from the host's cache besides the ones it reflects. A read of
    /// a kind not listed here is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<KindReference>,
}

/// Where a plugin's bytes come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PluginSource {
    /// An entry of a ConfigMap (`binaryData`); the plugin is reloaded when the entry changes.
    ConfigMap(ConfigMapPluginSource),
    /// An HTTP(S) URL; the download must match `sha256`.
    Url(UrlPluginSource),
    /// A file on the host's filesystem (development, or a volume mounted into the host Pod).
    File(FilePluginSource),
}

/// A plugin stored in a ConfigMap entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapPluginSource {
    /// Name of the ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the ConfigMap.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// Key of the entry (in `binaryData` or `data`), `plugin.wasm` by default.
    #[serde(default = "default_config_map_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_config_map_key() -> String {
    DEFAULT_CONFIG_MAP_KEY.to_string()
}

/// A plugin downloaded over HTTP(S), pinned by digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct UrlPluginSource {
    /// The URL to download the plugin from.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// The SHA-256 of the plugin, 64 lower-case hex digits. A download with another digest is
    /// refused.
    #[schemars(regex(pattern = r"^[a-f0-9]{64}$"))]
    pub sha256: String,
}

/// A plugin read from a file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct FilePluginSource {
    /// Absolute path of the `.wasm` file, as seen by the host process.
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

/// Resource limits of a plugin. Its memory budget is `maxInstances × memoryMiB`: the most
/// linear memory all its instances (running or warm) can hold together. The host loads the
/// plugin only if that budget fits in its container's memory limit, after what the host keeps
/// for itself and the budgets of the other plugins.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub struct ReflectionPluginLimits {
    /// CPU time budget of one call in milliseconds (default 100, at most 10000).
    #[serde(rename = "cpuMillisPerCall", default = "default_cpu_millis")]
    #[schemars(range(min = 1, max = 10000))]
    pub cpu_millis_per_call: u32,
    /// Memory cap of one instance's linear memory in MiB (default 64, at most 512).
    #[serde(rename = "memoryMiB", default = "default_memory_mib")]
    #[schemars(range(min = 1, max = 512))]
    pub memory_mib: u32,
    /// Instances of the plugin, and so calls of it that run at once (default 2, at most 16).
    #[serde(rename = "maxInstances", default = "default_max_instances")]
    #[schemars(range(min = 1, max = 16))]
    pub max_instances: u32,
}

fn default_cpu_millis() -> u32 {
    100
}

fn default_memory_mib() -> u32 {
    64
}

fn default_max_instances() -> u32 {
    2
}

impl Default for ReflectionPluginLimits {
    fn default() -> Self {
        Self {
            cpu_millis_per_call: default_cpu_millis(),
            memory_mib: default_memory_mib(),
            max_instances: default_max_instances(),
        }
    }
}

/// What happens to an object whose plugin call fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailurePolicy {
    /// The remote copy keeps its last state; the failure is reported (Warning Event, metrics)
    /// and the object retried with backoff.
    #[default]
    Fail,
    /// The object is skipped: its remote copy is removed; the failure is reported the same way.
    Ignore,
}

/// A kind, by group, version and kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct KindReference {
    /// API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// API version, for example `v1`.
    #[schemars(length(min = 1))]
    pub version: String,
    /// Kind, for example `ConfigMap`.
    #[schemars(length(min = 1))]
    pub kind: String,
}

/// The state of the plugin, written by the host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReflectionPluginStatus {
    /// Standard conditions; `Loaded` says whether the plugin is loaded and serving its kinds,
    /// with the error when it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `sha256:<hex>` of the loaded plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The name the plugin declares in its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    /// The version the plugin declares in its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
    /// The kinds the plugin reflects, as `group/version/Kind` (`v1/Kind` for the core group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
}

impl ReflectionPluginStatus {
    /// The `Loaded` condition, if present.
    pub fn loaded(&self) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == CONDITION_LOADED)
    }
}

/// Schema of a free-form JSON object (`config`): any fields, kept as they are.
fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::{CustomResourceExt, Resource};
    use serde_json::json;

    #[test]
    fn resource_identity() {
        assert_eq!(ReflectionPlugin::group(&()), "plugins.liqo.io");
        assert_eq!(ReflectionPlugin::version(&()), "v1alpha1");
        assert_eq!(ReflectionPlugin::plural(&()), "reflectionplugins");
        assert_eq!(ReflectionPlugin::crd().spec.scope, "Cluster");
    }

    #[test]
    fn round_trips_and_defaults() {
        let spec: ReflectionPluginSpec = serde_json::from_value(json!({
            "source": {"configMap": {"name": "p", "namespace": "liqo"}}
        }))
        .unwrap();
        assert_eq!(
            spec.source,
            PluginSource::ConfigMap(ConfigMapPluginSource {
                name: "p".into(),
                namespace: "liqo".into(),
                key: "plugin.wasm".into()
            })
        );
        assert_eq!(spec.limits.cpu_millis_per_call, 100);
        assert_eq!(spec.limits.memory_mib, 64);
        assert_eq!(spec.limits.max_instances, 2);
        assert_eq!(spec.failure_policy, FailurePolicy::Fail);

        let obj = json!({
            "apiVersion": "plugins.liqo.io/v1alpha1",
            "kind": "ReflectionPlugin",
            "metadata": {"name": "configmaps"},
            "spec": {
                "source": {"url": {"url": "https://example.com/p.wasm", "sha256": "ab".repeat(32)}},
                "config": {"reflectionPolicy": "AllowList", "nested": {"a": [1, 2]}},
                "limits": {"cpuMillisPerCall": 250, "memoryMiB": 128, "maxInstances": 3},
                "failurePolicy": "Ignore",
                "reads": [{"group": "", "version": "v1", "kind": "Secret"}]
            },
            "status": {
                "conditions": [{"type": "Loaded", "status": "True", "reason": "Loaded",
                    "message": "loaded", "lastTransitionTime": "2024-01-01T00:00:00Z",
                    "observedGeneration": 1}],
                "digest": "sha256:00",
                "pluginName": "configmap",
                "pluginVersion": "0.1.0",
                "kinds": ["v1/ConfigMap"]
            }
        });
        let rp: ReflectionPlugin = serde_json::from_value(obj.clone()).unwrap();
        assert_eq!(rp.spec.limits.memory_mib, 128);
        assert_eq!(rp.spec.limits.max_instances, 3);
        assert_eq!(rp.spec.failure_policy, FailurePolicy::Ignore);
        assert_eq!(rp.status.as_ref().unwrap().loaded().unwrap().status, "True");
        assert_eq!(serde_json::to_value(&rp).unwrap(), obj);
    }

    #[test]
    fn schema_shapes() {
        let crd = serde_json::to_value(ReflectionPlugin::crd()).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let config = &spec["properties"]["config"];
        assert_eq!(config["type"], "object");
        assert_eq!(config["x-kubernetes-preserve-unknown-fields"], true);
        let source = &spec["properties"]["source"];
        for key in ["configMap", "url", "file"] {
            assert!(source["properties"][key].is_object(), "source.{key}");
        }
        assert_eq!(
            source["properties"]["url"]["required"],
            json!(["sha256", "url"])
        );
        assert_eq!(
            spec["properties"]["limits"]["default"],
            json!({"cpuMillisPerCall": 100, "memoryMiB": 64, "maxInstances": 2})
        );
        assert_eq!(spec["properties"]["failurePolicy"]["default"], "Fail");
    }

    #[test]
    fn printer_columns() {
        let crd = ReflectionPlugin::crd();
        let names: Vec<String> = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["PLUGIN", "VERSION", "LOADED", "AGE"]);
    }
}
