//! The ReflectionPlugin controller: user plugins loaded, replaced and removed while the host
//! runs.
//!
//! For each `ReflectionPlugin` the controller fetches the component (ConfigMap entry, URL
//! pinned by sha256, or file), loads it through the same [`PluginRuntime`] as the built-in
//! plugins, checks it against the API server (every kind it reflects is served, namespaced,
//! with the plural the manifest declares) and against its spec (it reads only kinds the spec
//! allows), then hands it to the engine ([`Engine::install_plugin`]). The engine swaps it in
//! at the end of each pass in flight and re-evaluates every object of its kinds.
//!
//! A new version that fails to load never replaces a working one: the previous version keeps
//! serving and `Loaded=False` says why. Deleting a ReflectionPlugin gives its kinds back to the
//! built-in plugins, or, for kinds without one, deletes the remote copies it made; a finalizer
//! keeps the object until they are gone.
//!
//! ConfigMap and file sources are polled ([`SOURCE_POLL`]) with a metadata read (ConfigMap
//! `resourceVersion`, file size and modification time), so an updated component is picked up
//! without watching every ConfigMap of the cluster.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::api::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::conditions::{
    CONDITION_LOADED, REASON_DIGEST_MISMATCH, REASON_INVALID_PLUGIN, REASON_LOADED,
    REASON_SOURCE_UNAVAILABLE, STATUS_FALSE, STATUS_TRUE, now, upsert_condition,
};
use crate::api::reflection_plugin::{
    FailurePolicy, PluginSource, ReflectionPlugin, ReflectionPluginSpec, ReflectionPluginStatus,
};
use crate::api::wire::PLUGIN_FINALIZER;
use crate::plugin::{LoadError, PluginLimits, PluginRuntime, ReflectorPlugin};
use crate::reflect::{Engine, FailureMode, Release};

/// How often ConfigMap and file sources are checked for a new component.
pub const SOURCE_POLL: Duration = Duration::from_secs(5);

/// Largest component the host downloads or reads (bytes).
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// Condition reasons of `Loaded` besides the ones in [`crate::api::conditions`].
pub mod reasons {
    /// The configuration is not a JSON object the plugin accepts.
    pub const INVALID_CONFIG: &str = "InvalidConfig";
    /// Another user plugin already reflects one of the kinds.
    pub const KIND_CONFLICT: &str = "KindConflict";
    /// The API server does not serve a kind the plugin reflects, or serves it differently.
    pub const KIND_NOT_SERVED: &str = "KindNotServed";
    /// The manifest reads kinds `spec.reads` does not allow.
    pub const READS_NOT_ALLOWED: &str = "ReadsNotAllowed";
    /// The ReflectionPlugin is being deleted and its remote copies removed.
    pub const REMOVING: &str = "Removing";
    /// The plugin's memory budget (`maxInstances × memoryMiB`) does not fit in the host's
    /// container memory limit next to the other plugins; retried every 10 s (another plugin
    /// may go).
    pub const MEMORY_BUDGET: &str = "MemoryBudget";
}

/// Event reasons on ReflectionPlugin objects.
pub mod event_reasons {
    /// A plugin started serving its kinds.
    pub const LOADED: &str = "PluginLoaded";
    /// A new version replaced the one serving.
    pub const REPLACED: &str = "PluginReplaced";
    /// A version could not be loaded.
    pub const FAILED: &str = "PluginLoadFailed";
}

/// What the controller needs.
pub struct UserPluginsContext {
    client: Client,
    runtime: PluginRuntime,
    engine: Engine,
    http: reqwest::Client,
    recorder: Recorder,
    /// Only ReflectionPlugins matching this label selector (all when `None`).
    selector: Option<String>,
    /// What each ReflectionPlugin (by object name) has loaded.
    loaded: Mutex<HashMap<String, LoadedPlugin>>,
}

/// The version of a ReflectionPlugin that serves its kinds now.
#[derive(Clone)]
struct LoadedPlugin {
    /// Identifies the source's content cheaply (ConfigMap resourceVersion, file size and
    /// mtime, URL and digest) so an unchanged source is not fetched again.
    source_token: String,
    /// Everything else of the spec that a load depends on.
    spec_fingerprint: String,
    digest: String,
    plugin: Arc<ReflectorPlugin>,
    kinds: Vec<String>,
}

/// A load that did not happen, as a `Loaded=False` reason and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The condition reason.
    pub reason: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Errors of the controller itself (the API server), not of the plugin.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A Kubernetes call failed.
    #[error("ReflectionPlugin {name}: {action}: {source}")]
    Kube {
        /// The ReflectionPlugin.
        name: String,
        /// What the controller was doing.
        action: &'static str,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// Remote copies are still being deleted.
    #[error("ReflectionPlugin {name}: {remote_copies} remote copies left to remove")]
    Removing {
        /// The ReflectionPlugin.
        name: String,
        /// Copies left.
        remote_copies: usize,
    },
}

impl UserPluginsContext {
    /// A context for `engine`, loading components through `runtime`.
    pub fn new(client: Client, runtime: PluginRuntime, engine: Engine) -> Self {
        let reporter = Reporter {
            controller: "liqo-host".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            runtime,
            engine,
            http: http_client(),
            selector: None,
            loaded: Mutex::default(),
        }
    }

    /// Serves only the ReflectionPlugins matching `selector` (a label selector), so several
    /// hosts, for example tests, can share one cluster.
    pub fn with_selector(mut self, selector: impl Into<String>) -> Self {
        self.selector = Some(selector.into());
        self
    }

    fn watcher_config(&self) -> watcher::Config {
        match &self.selector {
            Some(selector) => watcher::Config::default().labels(selector),
            None => watcher::Config::default(),
        }
    }

    fn loaded(&self, name: &str) -> Option<LoadedPlugin> {
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

fn http_client() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("liqo-host/", env!("CARGO_PKG_VERSION")));
    let builder = match tls {
        Ok(tls) => builder.use_preconfigured_tls(tls),
        Err(err) => {
            tracing::warn!(%err, "TLS setup for plugin downloads failed; https sources will fail");
            builder
        }
    };
    builder.build().unwrap_or_default()
}

/// Loads every existing ReflectionPlugin once, before reflection starts, so a user plugin
/// that replaces a built-in one is in place before the first pass (no flip-flop of remote
/// objects at every restart). Failures are left to the controller to report.
pub async fn load_existing(ctx: &UserPluginsContext) {
    let api: Api<ReflectionPlugin> = Api::all(ctx.client.clone());
    let params = match &ctx.selector {
        Some(selector) => kube::api::ListParams::default().labels(selector),
        None => kube::api::ListParams::default(),
    };
    let list = match api.list(&params).await {
        Ok(list) => list,
        Err(err) => {
            tracing::warn!(%err, "listing ReflectionPlugins before reflection starts");
            return;
        }
    };
    for rp in list {
        if rp.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = rp.name_any();
        match load(&rp, ctx).await {
            Ok(Some(_)) => tracing::info!(plugin = %name, "user plugin loaded at start"),
            Ok(None) => {}
            Err(failure) => tracing::warn!(plugin = %name, "{failure}"),
        }
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<UserPluginsContext>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<ReflectionPlugin> = Api::all(ctx.client.clone());
    Controller::new(api, ctx.watcher_config())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(%err, "ReflectionPlugin reconcile");
            }
        })
        .await;
}

fn error_policy(
    rp: Arc<ReflectionPlugin>,
    err: &finalizer::Error<ControllerError>,
    _: Arc<UserPluginsContext>,
) -> Action {
    if let finalizer::Error::CleanupFailed(ControllerError::Removing { .. }) = err {
        tracing::debug!(plugin = %rp.name_any(), "{err}");
        return Action::requeue(Duration::from_secs(1));
    }
    tracing::warn!(plugin = %rp.name_any(), "{err}");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(
    rp: Arc<ReflectionPlugin>,
    ctx: Arc<UserPluginsContext>,
) -> Result<Action, finalizer::Error<ControllerError>> {
    let api: Api<ReflectionPlugin> = Api::all(ctx.client.clone());
    finalizer::finalizer(&api, PLUGIN_FINALIZER, rp, |event| async {
        match event {
            FinalizerEvent::Apply(rp) => apply(&rp, &ctx).await,
            FinalizerEvent::Cleanup(rp) => cleanup(&rp, &ctx).await,
        }
    })
    .await
}

/// When to look again: sources that can change in place are polled.
fn next_check(spec: &ReflectionPluginSpec) -> Action {
    match spec.source {
        PluginSource::Url(_) => Action::await_change(),
        PluginSource::ConfigMap(_) | PluginSource::File(_) => Action::requeue(SOURCE_POLL),
    }
}

async fn apply(rp: &ReflectionPlugin, ctx: &UserPluginsContext) -> Result<Action, ControllerError> {
    let name = rp.name_any();
    let previous = ctx.loaded(&name);
    match load(rp, ctx).await {
        Ok(newly) => {
            let serving = ctx.loaded(&name);
            if let (Some(new), Some(serving)) = (&newly, &serving) {
                let (reason, note) = match &previous {
                    Some(old) if old.digest != new.digest => (
                        event_reasons::REPLACED,
                        format!(
                            "{} {} ({}) replaced {} {} ({}) for {}",
                            new.plugin.name(),
                            new.plugin.manifest().version,
                            short(&new.digest),
                            old.plugin.name(),
                            old.plugin.manifest().version,
                            short(&old.digest),
                            serving.kinds.join(", ")
                        ),
                    ),
                    _ => (
                        event_reasons::LOADED,
                        format!(
                            "{} {} ({}) serves {}",
                            new.plugin.name(),
                            new.plugin.manifest().version,
                            short(&new.digest),
                            serving.kinds.join(", ")
                        ),
                    ),
                };
                publish(ctx, rp, EventType::Normal, reason, note).await;
            }
            if let Some(serving) = serving {
                let message = format!(
                    "{} {} serves {}",
                    serving.plugin.name(),
                    serving.plugin.manifest().version,
                    serving.kinds.join(", ")
                );
                write_status(rp, ctx, Some(&serving), STATUS_TRUE, REASON_LOADED, message).await?;
            }
            Ok(next_check(&rp.spec))
        }
        Err(failure) => {
            let serving = ctx.loaded(&name);
            let mut message = failure.message.clone();
            if let Some(serving) = &serving {
                message.push_str(&format!(
                    "; the previously loaded {} ({}) keeps serving {}",
                    serving.plugin.manifest().version,
                    short(&serving.digest),
                    serving.kinds.join(", ")
                ));
            }
            let already_reported = rp
                .status
                .as_ref()
                .and_then(|s| s.loaded())
                .is_some_and(|c| c.status == STATUS_FALSE && c.message == message);
            if !already_reported {
                publish(
                    ctx,
                    rp,
                    EventType::Warning,
                    event_reasons::FAILED,
                    message.clone(),
                )
                .await;
            }
            write_status(
                rp,
                ctx,
                serving.as_ref(),
                STATUS_FALSE,
                failure.reason,
                message,
            )
            .await?;
            // Sources that may become available (a ConfigMap created later, a CRD installed,
            // another plugin removed) are retried; a bad component waits for a change.
            Ok(match failure.reason {
                REASON_INVALID_PLUGIN
                | REASON_DIGEST_MISMATCH
                | reasons::INVALID_CONFIG
                | reasons::READS_NOT_ALLOWED => next_check(&rp.spec),
                _ => Action::requeue(Duration::from_secs(10)),
            })
        }
    }
}

async fn cleanup(
    rp: &ReflectionPlugin,
    ctx: &UserPluginsContext,
) -> Result<Action, ControllerError> {
    let name = rp.name_any();
    match ctx.engine.release_plugin(&name) {
        Release::Done => {
            ctx.loaded
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
            tracing::info!(plugin = %name, "user plugin removed");
            Ok(Action::await_change())
        }
        Release::Pending { remote_copies } => {
            let message = format!(
                "removing: {remote_copies} remote copies of the kinds this plugin alone reflected are being deleted"
            );
            // Best effort: the finalizer is what matters.
            let _ = write_status(
                rp,
                ctx,
                ctx.loaded(&name).as_ref(),
                STATUS_FALSE,
                reasons::REMOVING,
                message,
            )
            .await;
            Err(ControllerError::Removing {
                name,
                remote_copies,
            })
        }
    }
}

/// Loads `rp` unless what serves already matches its spec and source. Returns the newly
/// loaded version, `None` when nothing changed.
async fn load(
    rp: &ReflectionPlugin,
    ctx: &UserPluginsContext,
) -> Result<Option<LoadedPlugin>, Failure> {
    let name = rp.name_any();
    let spec_fingerprint = spec_fingerprint(&rp.spec);
    let source_token = source_token(&rp.spec.source, ctx).await?;
    if let Some(loaded) = ctx.loaded(&name)
        && loaded.source_token == source_token
        && loaded.spec_fingerprint == spec_fingerprint
    {
        return Ok(None);
    }
    let bytes = fetch(&rp.spec.source, ctx).await?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let config = rp
        .spec
        .config
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "{}".into());
    let limits = PluginLimits::new(
        u64::from(rp.spec.limits.cpu_millis_per_call),
        rp.spec.limits.memory_mib as usize,
    )
    .with_max_instances(rp.spec.limits.max_instances as usize);
    let runtime = ctx.runtime.clone();
    let source = format!("ReflectionPlugin {name}");
    // Compiling a component takes CPU for a while: keep it off the async workers.
    let plugin = tokio::task::spawn_blocking(move || {
        runtime.load_reflector(&source, &bytes, limits, &config)
    })
    .await
    .map_err(|e| Failure::new(REASON_INVALID_PLUGIN, format!("loading panicked: {e}")))?
    .map_err(load_failure)?;

    check_reads(&plugin, &rp.spec)?;
    check_served(&plugin, &ctx.client).await?;
    let failure = match rp.spec.failure_policy {
        FailurePolicy::Fail => FailureMode::KeepAndRetry,
        FailurePolicy::Ignore => FailureMode::Skip,
    };
    ctx.engine
        .install_plugin(&name, plugin.clone(), failure)
        .map_err(|e| Failure::new(reasons::KIND_CONFLICT, e.to_string()))?;
    let kinds = plugin
        .manifest()
        .reflects
        .iter()
        .map(ToString::to_string)
        .collect();
    let loaded = LoadedPlugin {
        source_token,
        spec_fingerprint,
        digest,
        plugin,
        kinds,
    };
    ctx.loaded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone(), loaded.clone());
    tracing::info!(
        plugin = %name, name = %loaded.plugin.name(), version = %loaded.plugin.manifest().version,
        digest = %loaded.digest, kinds = ?loaded.kinds, "user plugin serving"
    );
    Ok(Some(loaded))
}

fn load_failure(err: LoadError) -> Failure {
    let reason = match err {
        LoadError::InvalidConfig { .. } => reasons::INVALID_CONFIG,
        LoadError::MemoryBudget { .. } => reasons::MEMORY_BUDGET,
        _ => REASON_INVALID_PLUGIN,
    };
    Failure::new(reason, err.to_string())
}

/// Everything of the spec besides the source that changes what a load produces.
fn spec_fingerprint(spec: &ReflectionPluginSpec) -> String {
    json!({
        "config": spec.config,
        "limits": spec.limits,
        "failurePolicy": spec.failure_policy,
        "reads": spec.reads,
    })
    .to_string()
}

/// The manifest may read only the kinds it reflects and the ones `spec.reads` allows.
fn check_reads(plugin: &ReflectorPlugin, spec: &ReflectionPluginSpec) -> Result<(), Failure> {
    let manifest = plugin.manifest();
    let denied: Vec<String> = manifest
        .reads
        .iter()
        .filter(|r| !manifest.reflects.iter().any(|k| k.same_kind(r)))
        .filter(|r| {
            !spec
                .reads
                .iter()
                .any(|a| a.group == r.group && a.version == r.version && a.kind == r.kind)
        })
        .map(ToString::to_string)
        .collect();
    if denied.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        reasons::READS_NOT_ALLOWED,
        format!(
            "plugin {} reads {}, which spec.reads does not allow; add them to spec.reads \
             (liqoctl plugin install --reads) if the plugin should see them",
            plugin.name(),
            denied.join(", ")
        ),
    ))
}

/// Every kind the plugin reflects must be served here, namespaced, with the manifest's plural:
/// a wrong plural would otherwise only show as a watch failing forever.
async fn check_served(plugin: &ReflectorPlugin, client: &Client) -> Result<(), Failure> {
    for kind in &plugin.manifest().reflects {
        let gvk = GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind);
        let (resource, capabilities) = pinned_kind(client, &gvk).await.map_err(|e| {
            Failure::new(
                reasons::KIND_NOT_SERVED,
                format!(
                    "plugin {} reflects {kind}, which this cluster's API server does not serve \
                     ({e}); install its CustomResourceDefinition here and in every peer",
                    plugin.name()
                ),
            )
        })?;
        if resource.plural != kind.plural {
            return Err(Failure::new(
                REASON_INVALID_PLUGIN,
                format!(
                    "plugin {} declares plural {:?} for {kind}, but the API server serves it as \
                     {:?}; fix the manifest",
                    plugin.name(),
                    kind.plural,
                    resource.plural
                ),
            ));
        }
        if capabilities.scope != Scope::Namespaced {
            return Err(Failure::new(
                REASON_INVALID_PLUGIN,
                format!(
                    "plugin {} reflects {kind}, which is cluster-scoped; reflection plugins \
                     reflect namespaced kinds only",
                    plugin.name()
                ),
            ));
        }
    }
    Ok(())
}

async fn source_token(source: &PluginSource, ctx: &UserPluginsContext) -> Result<String, Failure> {
    match source {
        PluginSource::ConfigMap(cm) => {
            let meta = Api::<ConfigMap>::namespaced(ctx.client.clone(), &cm.namespace)
                .get_metadata_opt(&cm.name)
                .await
                .map_err(|e| config_map_unreadable(&cm.namespace, &cm.name, &e))?
                .ok_or_else(|| config_map_missing(&cm.namespace, &cm.name))?;
            Ok(format!(
                "configmap:{}/{}/{}@{}",
                cm.namespace,
                cm.name,
                cm.key,
                meta.resource_version().unwrap_or_default()
            ))
        }
        PluginSource::File(file) => {
            let meta = tokio::fs::metadata(&file.path)
                .await
                .map_err(|e| file_unavailable(&file.path, &e))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            Ok(format!("file:{}@{}:{modified}", file.path, meta.len()))
        }
        PluginSource::Url(url) => Ok(format!("url:{}@{}", url.url, url.sha256)),
    }
}

fn config_map_unreadable(namespace: &str, name: &str, err: &kube::Error) -> Failure {
    Failure::new(
        REASON_SOURCE_UNAVAILABLE,
        format!("reading ConfigMap {namespace}/{name}: {err}"),
    )
}

fn config_map_missing(namespace: &str, name: &str) -> Failure {
    Failure::new(
        REASON_SOURCE_UNAVAILABLE,
        format!(
            "ConfigMap {namespace}/{name} not found; create it with the component in binaryData \
             (liqoctl plugin install does this)"
        ),
    )
}

fn file_unavailable(path: &str, err: &std::io::Error) -> Failure {
    Failure::new(
        REASON_SOURCE_UNAVAILABLE,
        format!("reading {path}: {err} (the path is read by the host process, not by kubectl)"),
    )
}

async fn fetch(source: &PluginSource, ctx: &UserPluginsContext) -> Result<Vec<u8>, Failure> {
    match source {
        PluginSource::ConfigMap(cm) => {
            let object = Api::<ConfigMap>::namespaced(ctx.client.clone(), &cm.namespace)
                .get_opt(&cm.name)
                .await
                .map_err(|e| config_map_unreadable(&cm.namespace, &cm.name, &e))?
                .ok_or_else(|| config_map_missing(&cm.namespace, &cm.name))?;
            if let Some(bytes) = object.binary_data.as_ref().and_then(|d| d.get(&cm.key)) {
                return Ok(bytes.0.clone());
            }
            if let Some(text) = object.data.as_ref().and_then(|d| d.get(&cm.key)) {
                return Ok(text.as_bytes().to_vec());
            }
            let mut keys: Vec<&String> = object
                .binary_data
                .iter()
                .flat_map(|d| d.keys())
                .chain(object.data.iter().flat_map(|d| d.keys()))
                .collect();
            keys.sort();
            Err(Failure::new(
                REASON_SOURCE_UNAVAILABLE,
                format!(
                    "ConfigMap {}/{} has no entry {:?} (it has: {}); set spec.source.configMap.key",
                    cm.namespace,
                    cm.name,
                    cm.key,
                    if keys.is_empty() {
                        "none".to_string()
                    } else {
                        keys.iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            ))
        }
        PluginSource::File(file) => {
            let meta = tokio::fs::metadata(&file.path)
                .await
                .map_err(|e| file_unavailable(&file.path, &e))?;
            if meta.len() > MAX_COMPONENT_BYTES {
                return Err(too_large(&file.path, meta.len()));
            }
            tokio::fs::read(&file.path)
                .await
                .map_err(|e| file_unavailable(&file.path, &e))
        }
        PluginSource::Url(url) => {
            let bytes = download(&ctx.http, &url.url).await?;
            let digest = hex::encode(Sha256::digest(&bytes));
            if digest != url.sha256 {
                return Err(Failure::new(
                    REASON_DIGEST_MISMATCH,
                    format!(
                        "{} has sha256 {digest}, but spec.source.url.sha256 is {}; the plugin \
                         is not loaded (fix the digest only if you trust the new content)",
                        url.url, url.sha256
                    ),
                ));
            }
            Ok(bytes)
        }
    }
}

fn too_large(what: &str, len: u64) -> Failure {
    Failure::new(
        REASON_INVALID_PLUGIN,
        format!("{what} is {len} bytes, more than the {MAX_COMPONENT_BYTES} bytes a plugin may be"),
    )
}

async fn download(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, Failure> {
    let unavailable = |e: String| Failure::new(REASON_SOURCE_UNAVAILABLE, e);
    let mut response = http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| unavailable(format!("downloading {url}: {e}")))?;
    if response
        .content_length()
        .is_some_and(|l| l > MAX_COMPONENT_BYTES)
    {
        return Err(too_large(
            url,
            response.content_length().unwrap_or_default(),
        ));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unavailable(format!("downloading {url}: {e}")))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_COMPONENT_BYTES {
            return Err(too_large(url, bytes.len() as u64));
        }
    }
    Ok(bytes)
}

fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

/// Sets the `Loaded` condition and what the plugin serves, and writes the status if it changed.
async fn write_status(
    rp: &ReflectionPlugin,
    ctx: &UserPluginsContext,
    serving: Option<&LoadedPlugin>,
    status: &str,
    reason: &str,
    message: String,
) -> Result<(), ControllerError> {
    let old = rp.status.clone().unwrap_or_default();
    let mut new = ReflectionPluginStatus {
        conditions: old.conditions.clone(),
        digest: serving.map(|s| s.digest.clone()),
        plugin_name: serving.map(|s| s.plugin.name().to_string()),
        plugin_version: serving.map(|s| s.plugin.manifest().version.clone()),
        kinds: serving.map(|s| s.kinds.clone()).unwrap_or_default(),
    };
    upsert_condition(
        &mut new.conditions,
        Condition {
            type_: CONDITION_LOADED.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: rp.metadata.generation,
            last_transition_time: now(),
        },
        now(),
    );
    if new == old {
        return Ok(());
    }
    crate::api::conditions::apply_status(
        &Api::<ReflectionPlugin>::all(ctx.client.clone()),
        &rp.name_any(),
        &new,
    )
    .await
    .map_err(|source| ControllerError::Kube {
        name: rp.name_any(),
        action: "writing status",
        source,
    })?;
    Ok(())
}

async fn publish(
    ctx: &UserPluginsContext,
    rp: &ReflectionPlugin,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let reference = ObjectReference {
        api_version: Some(ReflectionPlugin::api_version(&()).to_string()),
        kind: Some(ReflectionPlugin::kind(&()).to_string()),
        name: rp.metadata.name.clone(),
        uid: rp.metadata.uid.clone(),
        resource_version: rp.metadata.resource_version.clone(),
        ..ObjectReference::default()
    };
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Load".into(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&event, &reference).await {
        tracing::debug!(%err, "could not publish event");
    }
}
