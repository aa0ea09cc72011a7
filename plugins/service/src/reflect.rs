//! The Service reflection decision.

use liqo_plugin_sdk::keys::FORCE_REMOTE_NODE_PORT_ANNOTATION;
use liqo_plugin_sdk::{
    Decision, DecisionJson, HostApi, ReflectContext, ReflectionConfig, object, policy,
};
use serde_json::{Map, Value};

use crate::spec::remote_spec;

/// Decides what the local Service becomes in the remote cluster.
///
/// Skips `default/kubernetes` and Services the reflection policy excludes
/// (`liqo.io/skip-reflection` under `DenyList`, missing `liqo.io/allow-reflection` under
/// `AllowList`). Otherwise returns `{apiVersion: v1, kind: Service, metadata: {name, labels,
/// annotations}, spec}`; the host sets the namespace and ownership labels. Errors: invalid config,
/// an object that is not a Service or has no name.
///
/// The Service plugin needs nothing from the host; `_host` keeps the signature shared by all
/// reflectors.
pub fn reflect(
    _host: &dyn HostApi,
    ctx: &ReflectContext,
    service: &Value,
) -> Result<Decision, String> {
    reflect_owned(ctx, service.clone())
}

/// Exactly what the component's `reflect` export does: parses the Service JSON text, decides as
/// [`reflect`] does, serializes the remote object to JSON text. Use it to compare native and wasm
/// performance fairly.
pub fn reflect_json(
    _host: &dyn HostApi,
    ctx: &ReflectContext,
    service: &str,
) -> Result<DecisionJson, String> {
    let service = object::parse_object(service, "the Service")?;
    reflect_owned(ctx, service).map(Decision::into_json)
}

/// [`reflect`] on an owned object: the parts kept are moved into the result, not copied.
fn reflect_owned(ctx: &ReflectContext, mut service: Value) -> Result<Decision, String> {
    // The host only calls with the declared kind; the check catches a mis-registered plugin.
    object::expect_kind(&service, "v1", "Service")?;
    let config = ReflectionConfig::parse(&ctx.config)?;
    object::name(&service)?;

    let namespace =
        object::str_at(&service, &["metadata", "namespace"]).unwrap_or(&ctx.local_namespace);
    if let Some(reason) = policy::service_skip_reason(&service, namespace, config.policy) {
        return Ok(Decision::Skip(reason));
    }

    let force_node_ports = object::annotation(&service, FORCE_REMOTE_NODE_PORT_ANNOTATION)
        .is_some_and(|value| value.eq_ignore_ascii_case("true"));
    let metadata = config.take_remote_metadata(&mut service)?;
    let local_spec = object::take_map_at(&mut service, &["spec"]);

    let mut remote = Map::new();
    remote.insert("apiVersion".to_owned(), Value::String("v1".to_owned()));
    remote.insert("kind".to_owned(), Value::String("Service".to_owned()));
    remote.insert("metadata".to_owned(), Value::Object(metadata));
    remote.insert(
        "spec".to_owned(),
        Value::Object(remote_spec(local_spec, force_node_ports)),
    );
    Ok(Decision::Apply(Value::Object(remote)))
}
