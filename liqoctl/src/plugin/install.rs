//! `liqoctl plugin install | uninstall | list`: ReflectionPlugin objects whose component is
//! stored in a ConfigMap (`liqo-plugin-<name>`, `binaryData.plugin.wasm`).
//!
//! `install` checks the component locally with the host's runtime before writing anything,
//! then applies the ConfigMap and the ReflectionPlugin (server-side apply, field manager
//! `liqoctl`) and waits for the host to report `Loaded` with the same digest. `uninstall`
//! deletes the ReflectionPlugin, waits until it is gone (the host unloads the plugin), then
//! deletes the ConfigMap liqoctl created.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{ArgAction, Args, ValueEnum};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use liqo_host::api::conditions::{STATUS_FALSE, STATUS_TRUE};
use liqo_host::api::reflection_plugin::{
    DEFAULT_CONFIG_MAP_KEY, FailurePolicy, KindReference, PluginSource, ReflectionPlugin,
};
use liqo_host::api::wire::LIQOCTL_FIELD_MANAGER;
use liqo_host::plugin::{Manifest, PluginLimits};
use serde_json::{Value, json};

use super::build::human_size;
use super::kind::{KindSpec, is_dns_label};
use super::{PluginRuntime, ReflectorPlugin};
use crate::context::GlobalArgs;
use crate::info::age;
use crate::progress::Spinner;
use liqo_gateway::duration::parse_duration;

/// Label on the ConfigMaps liqoctl creates, so that `uninstall` deletes only those.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label naming the ReflectionPlugin a ConfigMap belongs to.
pub const PLUGIN_LABEL: &str = "plugins.liqo.io/plugin";
/// Annotation with the digest of the component in a ConfigMap.
pub const DIGEST_ANNOTATION: &str = "plugins.liqo.io/digest";
/// How long `Loaded=False` must last, unchanged since the apply, before `install --wait`
/// takes it as the answer (the host polls ConfigMap sources every 5 seconds).
const FAILURE_SETTLE: Duration = Duration::from_secs(15);
/// Largest component a ConfigMap can hold: the API server refuses ConfigMaps over 1 MiB
/// (all keys and values together); a little room is left for the metadata.
pub const MAX_CONFIG_MAP_BYTES: usize = (1 << 20) - 4096;

/// Flags of `liqoctl plugin install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The plugin component (.wasm).
    pub plugin: PathBuf,
    /// The ReflectionPlugin's name (default: the name in the plugin's manifest). The ConfigMap
    /// is called liqo-plugin-NAME.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub config: super::ConfigArgs,
    /// CPU budget of one call in milliseconds (spec.limits.cpuMillisPerCall).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub cpu_ms: u32,
    /// Memory cap of one instance of the plugin in MiB (spec.limits.memoryMiB).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub memory_mib: u32,
    /// Instances of the plugin, and so calls of it that run at once
    /// (spec.limits.maxInstances). Its memory budget, max-instances × memory-mib, must fit in
    /// the host's container memory limit next to the other plugins.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub max_instances: u32,
    /// What happens to an object whose plugin call fails (error, trap, limit): Fail keeps its
    /// remote copy as it was and retries with backoff; Ignore handles the object as skipped
    /// (its remote copy is removed). Both report the failure (Event, metrics).
    #[arg(long, value_enum, default_value_t = Policy::Fail)]
    pub failure_policy: Policy,
    /// Kinds the plugin may read from the host's cache besides the ones it reflects, as
    /// GROUP/VERSION/KIND (v1/Secret, apps/v1/Deployment), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "GROUP/VERSION/KIND,...")]
    pub reads: Vec<String>,
    /// Namespace of the ConfigMap holding the component.
    #[arg(long, default_value = "liqo")]
    pub namespace: String,
    /// Wait until the host reports the plugin Loaded with this digest (--wait=false to skip).
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pub wait: bool,
    /// How long to wait for the host.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `--failure-policy` values, spelled as in the ReflectionPlugin spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "verbatim")]
pub enum Policy {
    /// Keep the remote copy, report, retry with backoff.
    Fail,
    /// Report, and handle the object as skipped (its remote copy is removed).
    Ignore,
}

impl From<Policy> for FailurePolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Fail => FailurePolicy::Fail,
            Policy::Ignore => FailurePolicy::Ignore,
        }
    }
}

/// Flags of `liqoctl plugin uninstall`.
#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// The ReflectionPlugin's name (liqoctl plugin list).
    pub name: String,
    /// How long to wait for the host to unload the plugin.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Flags of `liqoctl plugin list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Output format: wide (more columns), yaml or json (the objects).
    #[arg(short, long, value_enum)]
    pub output: Option<ListFormat>,
}

/// Output formats of `plugin list`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ListFormat {
    /// The table with the source, failure policy, full digest and message.
    Wide,
    /// The ReflectionPlugins as YAML.
    Yaml,
    /// The ReflectionPlugins as JSON.
    Json,
}

/// `liqo-plugin-<name>`.
pub fn config_map_name(name: &str) -> String {
    format!("liqo-plugin-{name}")
}

/// Label that aggregates a ClusterRole into the host's `liqo-host-user-kinds`.
pub const AGGREGATE_TO_HOST_LABEL: &str = "liqo.io/aggregate-to-host";

/// The ClusterRole `liqo-plugin-<name>` letting the host read (get, list, watch) the kinds the
/// plugin reflects and reads, aggregated into `liqo-host-user-kinds`.
pub fn host_read_role(name: &str, manifest: &Manifest) -> Value {
    let mut by_group: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for kind in manifest.reflects.iter().chain(&manifest.reads) {
        by_group
            .entry(kind.group.clone())
            .or_default()
            .insert(kind.plural.clone());
    }
    let rules: Vec<Value> = by_group
        .into_iter()
        .map(|(group, plurals)| {
            json!({"apiGroups": [group], "resources": plurals, "verbs": ["get", "list", "watch"]})
        })
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": config_map_name(name),
            "labels": {
                AGGREGATE_TO_HOST_LABEL: "true",
                PLUGIN_LABEL: name,
                MANAGED_BY_LABEL: LIQOCTL_FIELD_MANAGER,
            },
        },
        "rules": rules,
    })
}

/// The ConfigMap holding the component.
pub fn config_map(name: &str, namespace: &str, bytes: &[u8], digest: &str) -> Value {
    use base64::Engine as _;
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(name),
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: LIQOCTL_FIELD_MANAGER, PLUGIN_LABEL: name},
            "annotations": {DIGEST_ANNOTATION: digest},
        },
        "binaryData": {
            DEFAULT_CONFIG_MAP_KEY: base64::engine::general_purpose::STANDARD.encode(bytes),
        },
    })
}

/// The ReflectionPlugin (as applied: only the fields liqoctl owns).
pub fn reflection_plugin(
    name: &str,
    namespace: &str,
    config: Option<Value>,
    limits: (u32, u32, u32),
    policy: FailurePolicy,
    reads: &[KindReference],
) -> Value {
    let mut spec = json!({
        "source": {"configMap": {
            "name": config_map_name(name),
            "namespace": namespace,
            "key": DEFAULT_CONFIG_MAP_KEY,
        }},
        "limits": {"cpuMillisPerCall": limits.0, "memoryMiB": limits.1, "maxInstances": limits.2},
        "failurePolicy": policy,
    });
    if let Some(config) = config {
        spec["config"] = config;
    }
    if !reads.is_empty() {
        spec["reads"] = json!(reads);
    }
    json!({
        "apiVersion": "plugins.liqo.io/v1alpha1",
        "kind": "ReflectionPlugin",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// Parses `--reads`.
pub fn parse_reads(reads: &[String]) -> Result<Vec<KindReference>> {
    reads
        .iter()
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            let k = KindSpec::parse(r).map_err(|e| anyhow!("--reads {e}"))?;
            Ok(KindReference {
                group: k.group,
                version: k.version,
                kind: k.kind,
            })
        })
        .collect()
}

/// The kinds the manifest reads that are neither reflected by it nor allowed by `reads`, as
/// `apiVersion/Kind` (the host refuses such a plugin, the same way).
pub fn denied_reads(manifest: &Manifest, reads: &[KindReference]) -> Vec<String> {
    manifest
        .reads
        .iter()
        .filter(|r| !manifest.reflects.iter().any(|k| k.same_kind(r)))
        .filter(|r| {
            !reads
                .iter()
                .any(|a| a.group == r.group && a.version == r.version && a.kind == r.kind)
        })
        .map(ToString::to_string)
        .collect()
}

/// Runs `liqoctl plugin install`.
pub async fn install(global: &GlobalArgs, args: InstallArgs) -> Result<()> {
    // Everything local first: nothing is written when the component or a flag is wrong.
    let local = check_locally(&args)?;
    let name = &local.name;

    let client = global.client().await?;
    if Api::<Namespace>::all(client.clone())
        .get_opt(&args.namespace)
        .await
        .with_context(|| format!("reading namespace {}", args.namespace))?
        .is_none()
    {
        bail!(
            "namespace {} does not exist: run liqoctl install first, or choose --namespace",
            args.namespace
        );
    }
    let plugins: Api<ReflectionPlugin> = Api::all(client.clone());
    let before = plugins
        .get_opt(name)
        .await
        .map_err(|e| not_installed(e, name))?;
    let before_loaded = before
        .as_ref()
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.loaded().cloned());

    let applied = apply_plugin(&client, &args, &local).await?;
    let plugin = &local.plugin;
    let kinds = super::kinds_of(plugin).join(", ");
    println!(
        "ReflectionPlugin {name} applied: plugin {} {} ({kinds}), {} in ConfigMap {}/{}, {}",
        plugin.name(),
        plugin.manifest().version,
        human_size(local.bytes.len() as u64),
        args.namespace,
        config_map_name(name),
        local.digest
    );
    if !args.wait {
        return Ok(());
    }
    let expected = ExpectedLoad {
        name,
        digest: &local.digest,
        generation: applied.metadata.generation.unwrap_or_default(),
        before_loaded,
    };
    wait_loaded(&plugins, &expected, args.timeout).await
}

/// A component checked by [`check_locally`], ready to install.
struct LocalPlugin {
    /// The runtime the plugin was loaded in, kept alive as long as the plugin.
    _runtime: PluginRuntime,
    plugin: Arc<ReflectorPlugin>,
    /// The ReflectionPlugin's name (`--name`, else the plugin's).
    name: String,
    config: Option<Value>,
    reads: Vec<KindReference>,
    bytes: Vec<u8>,
    digest: String,
}

/// Reads and loads the component as the host would, and checks the flags against it, so that
/// nothing is written when the component or a flag is wrong.
fn check_locally(args: &InstallArgs) -> Result<LocalPlugin> {
    let config = args.config.value()?;
    let config_text = config
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_else(|| "{}".into());
    let reads = parse_reads(&args.reads)?;
    let bytes = super::read_component(&args.plugin)?;
    let digest = super::digest(&bytes);
    let runtime = super::runtime()?;
    let limits = PluginLimits::new(u64::from(args.cpu_ms), args.memory_mib as usize)
        .with_max_instances(args.max_instances as usize);
    let plugin = super::load(&runtime, &args.plugin, &bytes, limits, &config_text)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| plugin.name().to_string());
    if !is_dns_label(&name) || config_map_name(&name).len() > 253 {
        bail!(
            "--name {name:?} is not valid: use at most 63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit"
        );
    }
    let denied = denied_reads(plugin.manifest(), &reads);
    if !denied.is_empty() {
        bail!(
            "plugin {} reads {}, which the host allows only when listed in spec.reads: pass \
             --reads {} if the plugin should see them",
            plugin.name(),
            denied.join(", "),
            denied.join(",")
        );
    }
    if bytes.len() > MAX_CONFIG_MAP_BYTES {
        bail!(
            "{} is {} ({} bytes), too large for a ConfigMap (at most {} bytes): shrink it \
             (opt-level = \"s\", lto = true, strip = true in [profile.release]) or serve it over \
             HTTPS and create a ReflectionPlugin with spec.source.url (url, and sha256 {})",
            args.plugin.display(),
            human_size(bytes.len() as u64),
            bytes.len(),
            MAX_CONFIG_MAP_BYTES,
            digest.trim_start_matches("sha256:")
        );
    }
    Ok(LocalPlugin {
        _runtime: runtime,
        plugin,
        name,
        config,
        reads,
        bytes,
        digest,
    })
}

/// Applies the host's read role for the plugin's kinds, the ConfigMap holding the component and
/// the ReflectionPlugin; returns the ReflectionPlugin as applied.
async fn apply_plugin(
    client: &Client,
    args: &InstallArgs,
    local: &LocalPlugin,
) -> Result<ReflectionPlugin> {
    let name = &local.name;
    let params = PatchParams::apply(LIQOCTL_FIELD_MANAGER).force();
    // The host reads the plugin's kinds in this cluster (a host with an admin kubeconfig
    // needs nothing; one in a Pod gets these rules through the aggregated liqo-host-user-kinds).
    Api::<ClusterRole>::all(client.clone())
        .patch(
            &config_map_name(name),
            &params,
            &Patch::Apply(host_read_role(name, local.plugin.manifest())),
        )
        .await
        .with_context(|| format!("applying ClusterRole {}", config_map_name(name)))?;
    Api::<ConfigMap>::namespaced(client.clone(), &args.namespace)
        .patch(
            &config_map_name(name),
            &params,
            &Patch::Apply(config_map(
                name,
                &args.namespace,
                &local.bytes,
                &local.digest,
            )),
        )
        .await
        .with_context(|| {
            format!(
                "applying ConfigMap {}/{}",
                args.namespace,
                config_map_name(name)
            )
        })?;
    Api::<ReflectionPlugin>::all(client.clone())
        .patch(
            name,
            &params,
            &Patch::Apply(reflection_plugin(
                name,
                &args.namespace,
                local.config.clone(),
                (args.cpu_ms, args.memory_mib, args.max_instances),
                args.failure_policy.into(),
                &local.reads,
            )),
        )
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 422 => anyhow!(
                "the API server refused ReflectionPlugin {name}: {}",
                s.message
            ),
            other => not_installed(other, name),
        })
}

/// What `--wait` waits for: the host loading this digest at this generation.
struct ExpectedLoad<'a> {
    name: &'a str,
    digest: &'a str,
    /// The ReflectionPlugin's generation as applied.
    generation: i64,
    /// The Loaded condition before the apply, to tell a new failure from an old one.
    before_loaded: Option<Condition>,
}

/// Waits until the host reports the plugin loaded with our bytes; fails when it reports a
/// failure about this install, or after `timeout`.
async fn wait_loaded(
    plugins: &Api<ReflectionPlugin>,
    expected: &ExpectedLoad<'_>,
    timeout: Duration,
) -> Result<()> {
    let ExpectedLoad {
        name,
        digest,
        generation,
        ref before_loaded,
    } = *expected;
    let spinner = Spinner::start(format!("Waiting for the host to load plugin {name}"));
    let started = Instant::now();
    let mut last_message = String::new();
    loop {
        let current = plugins.get_opt(name).await?;
        let status = current
            .as_ref()
            .and_then(|p| p.status.clone())
            .unwrap_or_default();
        if let Some(loaded) = status.loaded() {
            let ours = status.digest.as_deref() == Some(digest);
            let observed = loaded.observed_generation.unwrap_or_default() >= generation;
            let reacted = before_loaded.as_ref() != Some(loaded);
            if loaded.status == STATUS_TRUE && ours && observed {
                spinner.success(format!(
                    "Plugin {name} loaded by the host ({}, {digest})",
                    status.kinds.join(", ")
                ));
                return Ok(());
            }
            // A failure is about this install when the host says so for our bytes, when the
            // condition changed since we applied, or when it stays False for longer than the
            // host takes to notice a new ConfigMap (it polls every few seconds).
            let settled = started.elapsed() > FAILURE_SETTLE;
            if loaded.status == STATUS_FALSE && observed && (ours || reacted || settled) {
                spinner.fail(format!("Plugin {name} was not loaded"));
                bail!(
                    "the host could not load plugin {name}: {}: {}",
                    loaded.reason,
                    loaded.message
                );
            }
            last_message = condition_line(loaded);
            spinner.set_message(format!(
                "Waiting for the host to load plugin {name} (Loaded={})",
                loaded.status
            ));
        }
        if started.elapsed() > timeout {
            spinner.fail(format!("Plugin {name} was not loaded"));
            bail!(
                "timed out after {}s waiting for the host to load plugin {name} with {digest}{}: \
                 is liqo-host running? (liqoctl info; kubectl describe reflectionplugin {name})",
                timeout.as_secs(),
                if last_message.is_empty() {
                    String::new()
                } else {
                    format!(" (last condition: {last_message})")
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn condition_line(c: &Condition) -> String {
    format!("Loaded={} {}: {}", c.status, c.reason, c.message)
}

/// Maps a missing CRD to a sentence saying what to do.
fn not_installed(err: kube::Error, name: &str) -> anyhow::Error {
    match err {
        kube::Error::Api(s) if s.code == 404 => anyhow!(
            "the ReflectionPlugin kind is not installed in this cluster: run liqoctl install"
        ),
        other => anyhow::Error::new(other).context(format!("ReflectionPlugin {name}")),
    }
}

/// Runs `liqoctl plugin uninstall`.
pub async fn uninstall(global: &GlobalArgs, args: UninstallArgs) -> Result<()> {
    let client = global.client().await?;
    let plugins: Api<ReflectionPlugin> = Api::all(client.clone());
    let name = &args.name;
    let existing = plugins
        .get_opt(name)
        .await
        .map_err(|e| not_installed(e, name))?;
    // The ConfigMap to delete: the one the ReflectionPlugin names, if liqoctl created it.
    let source = existing.as_ref().and_then(|p| match &p.spec.source {
        PluginSource::ConfigMap(cm) => Some((cm.namespace.clone(), cm.name.clone())),
        _ => None,
    });
    let (cm_namespace, cm_name) =
        source.unwrap_or_else(|| ("liqo".to_string(), config_map_name(name)));

    if existing.is_some() {
        delete_plugin(&plugins, name, args.timeout).await?;
    }

    match Api::<ClusterRole>::all(client.clone())
        .delete(&config_map_name(name), &DeleteParams::default())
        .await
    {
        Ok(_) => eprintln!("✔ ClusterRole {} deleted", config_map_name(name)),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("deleting ClusterRole {}", config_map_name(name)));
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client, &cm_namespace);
    let cm = cms
        .get_opt(&cm_name)
        .await
        .with_context(|| format!("reading ConfigMap {cm_namespace}/{cm_name}"))?;
    match cm {
        Some(cm)
            if cm.labels().get(MANAGED_BY_LABEL).map(String::as_str)
                == Some(LIQOCTL_FIELD_MANAGER) =>
        {
            cms.delete(&cm_name, &DeleteParams::default())
                .await
                .with_context(|| format!("deleting ConfigMap {cm_namespace}/{cm_name}"))?;
            eprintln!("✔ ConfigMap {cm_namespace}/{cm_name} deleted");
        }
        Some(_) => eprintln!(
            "ConfigMap {cm_namespace}/{cm_name} was not created by liqoctl plugin install: kept"
        ),
        None if existing.is_none() => {
            bail!(
                "plugin {name} is not installed (no ReflectionPlugin {name}): liqoctl plugin list shows the plugins"
            )
        }
        None => {}
    }
    Ok(())
}

/// Deletes the ReflectionPlugin `name` and waits, up to `timeout`, until it is gone (the host
/// removes its finalizer once it has cleaned up after the plugin).
async fn delete_plugin(
    plugins: &Api<ReflectionPlugin>,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    plugins
        .delete(name, &DeleteParams::foreground())
        .await
        .with_context(|| format!("deleting ReflectionPlugin {name}"))?;
    let spinner = Spinner::start(format!("Removing plugin {name}"));
    let started = Instant::now();
    while plugins.get_opt(name).await?.is_some() {
        if started.elapsed() > timeout {
            spinner.fail(format!("Removing plugin {name}"));
            bail!(
                "timed out after {}s waiting for ReflectionPlugin {name} to be deleted: \
                 is liqo-host running? (it removes its finalizer)",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    spinner.success(format!("ReflectionPlugin {name} deleted"));
    Ok(())
}

/// One row of `plugin list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Cells, in the order of [`columns`].
    pub cells: Vec<String>,
}

/// Column names of `plugin list` (`wide` adds the last four).
pub fn columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec![
        "NAME", "PLUGIN", "VERSION", "KINDS", "LOADED", "DIGEST", "AGE",
    ];
    if wide {
        c.extend(["SOURCE", "FAILURE POLICY", "LIMITS", "MESSAGE"]);
    }
    c
}

/// The row of one ReflectionPlugin; `now` for the AGE column.
pub fn row(plugin: &ReflectionPlugin, wide: bool, now: Timestamp) -> Row {
    let status = plugin.status.clone().unwrap_or_default();
    let or_none = |v: Option<String>| {
        v.filter(|s| !s.is_empty())
            .unwrap_or_else(|| "<none>".into())
    };
    let digest = status.digest.clone().map(|d| {
        if wide {
            d
        } else {
            // sha256: and 12 hex digits, like image digests in kubectl's short form.
            d.chars().take("sha256:".len() + 12).collect()
        }
    });
    let loaded = status.loaded();
    let age_cell = plugin
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| age(now.as_second() - t.0.as_second()))
        .unwrap_or_else(|| "<unknown>".into());
    let mut cells = vec![
        plugin.name_any(),
        or_none(status.plugin_name.clone()),
        or_none(status.plugin_version.clone()),
        or_none(Some(status.kinds.join(","))),
        loaded
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".into()),
        or_none(digest),
        age_cell,
    ];
    if wide {
        let source = match &plugin.spec.source {
            PluginSource::ConfigMap(cm) => format!("configMap:{}/{}", cm.namespace, cm.name),
            PluginSource::Url(u) => format!("url:{}", u.url),
            PluginSource::File(f) => format!("file:{}", f.path),
        };
        cells.extend([
            source,
            format!("{:?}", plugin.spec.failure_policy),
            format!(
                "{}ms/{}Mi",
                plugin.spec.limits.cpu_millis_per_call, plugin.spec.limits.memory_mib
            ),
            or_none(loaded.map(|c| c.message.clone())),
        ]);
    }
    Row { cells }
}

/// Left-aligned columns separated by three spaces, like kubectl.
pub fn table(header: &[&str], rows: &[Row]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.cells.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.cells.iter().map(String::as_str).collect()));
    }
    out
}

/// Runs `liqoctl plugin list`.
pub async fn list(global: &GlobalArgs, args: ListArgs) -> Result<()> {
    let client: Client = global.client().await?;
    let mut items = Api::<ReflectionPlugin>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| not_installed(e, "list"))?
        .items;
    items.sort_by_key(ResourceExt::name_any);
    match args.output {
        Some(ListFormat::Yaml) => crate::output::print(&items, crate::output::OutputFormat::Yaml),
        Some(ListFormat::Json) => crate::output::print(&items, crate::output::OutputFormat::Json),
        format => {
            if items.is_empty() {
                eprintln!("No ReflectionPlugins found (install one with liqoctl plugin install).");
                return Ok(());
            }
            let wide = matches!(format, Some(ListFormat::Wide));
            let now = Timestamp::now();
            let rows: Vec<Row> = items.iter().map(|p| row(p, wide, now)).collect();
            print!("{}", table(&columns(wide), &rows));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liqo_host::plugin::KindRef;

    #[test]
    fn applied_objects_have_the_spec_fields() {
        let cm = config_map("configmap", "liqo", b"\0asm", "sha256:ab");
        assert_eq!(cm["metadata"]["name"], "liqo-plugin-configmap");
        assert_eq!(cm["binaryData"]["plugin.wasm"], "AGFzbQ==");
        assert_eq!(cm["metadata"]["labels"][MANAGED_BY_LABEL], "liqoctl");

        let reads = parse_reads(&["v1/Secret".into(), "apps/v1/Deployment".into()]).unwrap();
        let rp = reflection_plugin(
            "configmap",
            "liqo",
            Some(json!({"a": 1})),
            (250, 128, 3),
            FailurePolicy::Ignore,
            &reads,
        );
        // It deserializes as the host's type, with what was asked.
        let typed: ReflectionPlugin = serde_json::from_value(rp).unwrap();
        assert_eq!(typed.spec.limits.cpu_millis_per_call, 250);
        assert_eq!(typed.spec.limits.memory_mib, 128);
        assert_eq!(typed.spec.limits.max_instances, 3);
        assert_eq!(typed.spec.failure_policy, FailurePolicy::Ignore);
        assert_eq!(typed.spec.config, Some(json!({"a": 1})));
        assert_eq!(typed.spec.reads[1].group, "apps");
        assert!(matches!(typed.spec.source, PluginSource::ConfigMap(ref c)
            if c.name == "liqo-plugin-configmap" && c.namespace == "liqo" && c.key == "plugin.wasm"));

        let bare = reflection_plugin("x", "liqo", None, (100, 64, 2), FailurePolicy::Fail, &[]);
        assert!(bare["spec"].get("config").is_none());
        assert!(bare["spec"].get("reads").is_none());
    }

    #[test]
    fn reads_beyond_the_reflected_kinds_must_be_allowed() {
        let kind = |group: &str, kind: &str| KindRef {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
            namespaced: true,
        };
        let manifest = Manifest {
            name: "p".into(),
            version: "1".into(),
            description: String::new(),
            reflects: vec![kind("", "ConfigMap")],
            triggers: vec![],
            reads: vec![
                kind("", "ConfigMap"),
                kind("", "Secret"),
                kind("apps", "Deployment"),
            ],
            reflect_status: false,
        };
        assert_eq!(
            denied_reads(&manifest, &[]),
            ["v1/Secret", "apps/v1/Deployment"]
        );
        let allowed = parse_reads(&["v1/Secret".into()]).unwrap();
        assert_eq!(denied_reads(&manifest, &allowed), ["apps/v1/Deployment"]);
    }

    #[test]
    fn reads_are_kinds() {
        let err = parse_reads(&["Secret".into()]).unwrap_err().to_string();
        assert!(err.starts_with("--reads \"Secret\""), "{err}");
    }

    #[test]
    fn list_rows_and_table() {
        let plugin: ReflectionPlugin = serde_json::from_value(json!({
            "apiVersion": "plugins.liqo.io/v1alpha1", "kind": "ReflectionPlugin",
            "metadata": {"name": "configmaps", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"source": {"configMap": {"name": "liqo-plugin-configmaps", "namespace": "liqo"}}},
            "status": {
                "conditions": [{"type": "Loaded", "status": "True", "reason": "Loaded",
                    "message": "loaded", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
                "digest": format!("sha256:{}", "ab".repeat(32)),
                "pluginName": "configmap", "pluginVersion": "0.1.0", "kinds": ["v1/ConfigMap"]
            }
        }))
        .unwrap();
        let now: Timestamp = "2024-01-01T00:05:00Z".parse().unwrap();
        let r = row(&plugin, false, now);
        assert_eq!(
            r.cells,
            [
                "configmaps",
                "configmap",
                "0.1.0",
                "v1/ConfigMap",
                "True",
                "sha256:abababababab",
                "5m0s"
            ]
        );
        let wide = row(&plugin, true, now);
        assert_eq!(wide.cells[5].len(), "sha256:".len() + 64);
        assert_eq!(wide.cells[7], "configMap:liqo/liqo-plugin-configmaps");
        assert_eq!(wide.cells[9], "100ms/64Mi");

        let pending: ReflectionPlugin = serde_json::from_value(json!({
            "apiVersion": "plugins.liqo.io/v1alpha1", "kind": "ReflectionPlugin",
            "metadata": {"name": "new"},
            "spec": {"source": {"configMap": {"name": "liqo-plugin-new", "namespace": "liqo"}}}
        }))
        .unwrap();
        let p = row(&pending, false, now);
        assert_eq!(
            p.cells[1..6],
            ["<none>", "<none>", "<none>", "Unknown", "<none>"]
        );

        let text = table(&columns(false), &[r, p]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("NAME         PLUGIN      VERSION   KINDS"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("configmaps   configmap   0.1.0     v1/ConfigMap"),
            "{text}"
        );
        assert_eq!(lines.len(), 3);
    }
}
