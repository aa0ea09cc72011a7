//! The EndpointSlice reflection decision.

use liqo_plugin_sdk::keys::{
    ENDPOINTSLICE_MANAGED_BY_LABEL, ENDPOINTSLICE_MANAGED_BY_REFLECTION, SERVICE_NAME_LABEL,
    SKIP_REFLECTION_ANNOTATION,
};
use liqo_plugin_sdk::{
    Decision, DecisionJson, HostApi, ReflectContext, ReflectionConfig, kinds, object, policy,
};
use serde_json::{Map, Value};

use crate::endpoints::{ServiceRef, remote_endpoints_and_ports, translates};

const API_VERSION: &str = "discovery.k8s.io/v1";
const KIND: &str = "EndpointSlice";

/// Decides what the local EndpointSlice becomes in the remote cluster.
///
/// Skipped when: the slice itself is annotated `liqo.io/skip-reflection`; it has no
/// `kubernetes.io/service-name` label; it is already managed by a reflection
/// (`endpointslice.kubernetes.io/managed-by: endpointslice.reflection.liqo.io`, i.e. it was
/// reflected into this cluster and must not be reflected on); its Service is not in the host
/// cache; or its Service is not reflected (`default/kubernetes`, or the reflection policy skips
/// it). Otherwise returns `{apiVersion, kind, metadata: {name, labels, annotations}, addressType,
/// endpoints, ports}` with every IP endpoint translated through `host.translate_endpoint` (every
/// address through `host.translate_address` when the slice has no numbered port); endpoints that
/// translate to the same address are merged (see `plugins/README.md`).
///
/// Errors: invalid config, not an EndpointSlice, no name or addressType, a failed Service read or
/// address translation, endpoints of one port translating to different ports (the host retries
/// with backoff).
pub fn reflect(
    host: &dyn HostApi,
    ctx: &ReflectContext,
    slice: &Value,
) -> Result<Decision, String> {
    reflect_owned(host, ctx, slice.clone())
}

/// Exactly what the component's `reflect` export does: parses the EndpointSlice JSON text,
/// decides as [`reflect`] does, serializes the remote object to JSON text.
pub fn reflect_json(
    host: &dyn HostApi,
    ctx: &ReflectContext,
    slice: &str,
) -> Result<DecisionJson, String> {
    let slice = object::parse_object(slice, "the EndpointSlice")?;
    reflect_owned(host, ctx, slice).map(Decision::into_json)
}

/// `Some(reason)` if the slice is not reflected; reads the Service through the host.
fn skip_reason(
    host: &dyn HostApi,
    ctx: &ReflectContext,
    slice: &Value,
    config: &ReflectionConfig,
) -> Result<Option<String>, String> {
    // An explicit opt-out on the slice wins under both policies (as in Liqo). An explicit
    // opt-in does not: a slice whose Service is not reflected would have no Service to serve.
    if policy::annotation_is_true(slice, SKIP_REFLECTION_ANNOTATION) {
        return Ok(Some(format!(
            "the EndpointSlice is annotated {SKIP_REFLECTION_ANNOTATION}"
        )));
    }
    if object::label(slice, ENDPOINTSLICE_MANAGED_BY_LABEL)
        == Some(ENDPOINTSLICE_MANAGED_BY_REFLECTION)
    {
        return Ok(Some(format!(
            "the EndpointSlice is itself a reflection ({ENDPOINTSLICE_MANAGED_BY_LABEL}={ENDPOINTSLICE_MANAGED_BY_REFLECTION})"
        )));
    }
    let Some(service_name) = object::label(slice, SERVICE_NAME_LABEL) else {
        return Ok(Some(format!(
            "the EndpointSlice has no {SERVICE_NAME_LABEL} label; only slices of a Service are reflected"
        )));
    };
    let namespace =
        object::str_at(slice, &["metadata", "namespace"]).unwrap_or(&ctx.local_namespace);
    let Some(service) = host.get_object(&kinds::service(), namespace, service_name)? else {
        // Not an error: the slice can be seen before its Service, and the Service's arrival
        // re-evaluates the slice (the manifest declares Service as a trigger).
        return Ok(Some(format!(
            "its Service {namespace}/{service_name} was not found"
        )));
    };
    Ok(
        policy::service_skip_reason(&service, namespace, config.policy).map(|reason| {
            format!("its Service {namespace}/{service_name} is not reflected: {reason}")
        }),
    )
}

/// [`reflect`] on an owned object: the parts kept are moved into the result, not copied.
fn reflect_owned(
    host: &dyn HostApi,
    ctx: &ReflectContext,
    mut slice: Value,
) -> Result<Decision, String> {
    object::expect_kind(&slice, API_VERSION, KIND)?;
    let config = ReflectionConfig::parse(&ctx.config)?;
    object::name(&slice)?;
    let address_type = object::str_at(&slice, &["addressType"])
        .ok_or("the EndpointSlice has no addressType")?
        .to_owned();

    if let Some(reason) = skip_reason(host, ctx, &slice, &config)? {
        return Ok(Decision::Skip(reason));
    }

    // The labels that make the remote slice work are set whatever `labelsNotReflected` says.
    let service_name = object::label(&slice, SERVICE_NAME_LABEL)
        .unwrap_or_default()
        .to_owned();
    let mut metadata = config.take_remote_metadata(&mut slice)?;
    let mut labels = match metadata.get_mut("labels").map(Value::take) {
        Some(Value::Object(labels)) => labels,
        _ => Map::new(),
    };
    labels.insert(
        SERVICE_NAME_LABEL.to_owned(),
        Value::String(service_name.clone()),
    );
    labels.insert(
        ENDPOINTSLICE_MANAGED_BY_LABEL.to_owned(),
        Value::String(ENDPOINTSLICE_MANAGED_BY_REFLECTION.to_owned()),
    );
    metadata.insert("labels".to_owned(), Value::Object(labels));

    let namespace = object::str_at(&slice, &["metadata", "namespace"])
        .unwrap_or(&ctx.local_namespace)
        .to_owned();
    let service = ServiceRef {
        namespace: &namespace,
        name: &service_name,
    };
    let endpoints = object::take_at(&mut slice, &["endpoints"]);
    let ports = object::take_at(&mut slice, &["ports"]);
    let (endpoints, ports) =
        remote_endpoints_and_ports(host, &service, endpoints, ports, translates(&address_type))?;

    let mut remote = Map::new();
    remote.insert(
        "apiVersion".to_owned(),
        Value::String(API_VERSION.to_owned()),
    );
    remote.insert("kind".to_owned(), Value::String(KIND.to_owned()));
    remote.insert("metadata".to_owned(), Value::Object(metadata));
    remote.insert("addressType".to_owned(), Value::String(address_type));
    remote.insert("endpoints".to_owned(), Value::Array(endpoints));
    remote.insert("ports".to_owned(), Value::Array(ports));
    Ok(Decision::Apply(Value::Object(remote)))
}
