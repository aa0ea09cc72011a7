//! Who a peering identity is: the tenant namespace's names and labels, and the consumer's
//! bound token (read without verifying, requested fresh).

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use crate::api::wire::{
    CONSUMER_SERVICE_ACCOUNT, TENANT_LABEL, TENANT_NAMESPACE_LABEL, TENANT_NAMESPACE_PREFIX,
};

/// Lifetime the consumer's host asks for when it replaces its token (at most 48 hours, which
/// the tenant policy enforces).
pub const TOKEN_REFRESH_SECONDS: i64 = 24 * 3600;

/// The user name of the consumer's ServiceAccount in `tenant`.
pub fn consumer_username(tenant: &str) -> String {
    format!("system:serviceaccount:{tenant}:{CONSUMER_SERVICE_ACCOUNT}")
}

/// Whether `ns` is a tenant namespace made by `liqoctl generate peer-command`: its name has
/// [`TENANT_NAMESPACE_PREFIX`] and it carries [`TENANT_NAMESPACE_LABEL`]. A namespace admin can
/// create neither (namespaces are cluster-scoped), nor can a peer (it has no namespace rights),
/// so only these namespaces' Leases and NamespaceMaps are trusted.
pub fn is_tenant_namespace(ns: &Namespace) -> bool {
    ns.name_any().starts_with(TENANT_NAMESPACE_PREFIX)
        && ns.labels().get(TENANT_NAMESPACE_LABEL).map(String::as_str) == Some("true")
}

/// The tenant namespace of a user name, when it is a consumer ServiceAccount.
pub fn tenant_of_username(username: &str) -> Option<&str> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, account) = rest.split_once(':')?;
    (account == CONSUMER_SERVICE_ACCOUNT && namespace.starts_with(TENANT_NAMESPACE_PREFIX))
        .then_some(namespace)
}

/// The times of a JWT, read without verifying its signature (the API server verifies it; the
/// client only wants to warn early and to renew in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTimes {
    /// `iat`, seconds since the epoch.
    pub issued_at: Option<i64>,
    /// `exp`, seconds since the epoch.
    pub expires_at: Option<i64>,
}

/// Decodes the `iat` and `exp` claims of a JWT; `None` when `token` is not a JWT.
pub fn token_times(token: &str) -> Option<TokenTimes> {
    let mut parts = token.trim().split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(TokenTimes {
        issued_at: claims.get("iat").and_then(serde_json::Value::as_i64),
        expires_at: claims.get("exp").and_then(serde_json::Value::as_i64),
    })
}

/// Whether a token should be replaced at `now` (seconds): past half of its lifetime.
pub fn token_needs_refresh(times: TokenTimes, now: i64) -> bool {
    match (times.issued_at, times.expires_at) {
        (Some(iat), Some(exp)) if exp > iat => now >= iat + (exp - iat) / 2,
        (_, Some(exp)) => now >= exp - TOKEN_REFRESH_SECONDS / 2,
        _ => false,
    }
}

/// Asks the API server of `client` for a bound token of the consumer ServiceAccount in
/// `tenant`, valid `seconds`. Used by liqoctl (as admin, on the provider) and by the consumer's
/// host (as the ServiceAccount itself, to replace its token).
pub async fn request_token(client: &Client, tenant: &str, seconds: i64) -> kube::Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(seconds),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client.clone(), tenant)
        .create_subresource(
            "token",
            CONSUMER_SERVICE_ACCOUNT,
            &PostParams::default(),
            &request,
        )
        .await?;
    Ok(answer.status.map(|s| s.token).unwrap_or_default())
}

/// Labels of the objects `liqoctl generate peer-command` creates for `tenant`.
pub fn tenant_labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(TENANT_LABEL.to_string(), tenant.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jwt(claims: serde_json::Value) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"RS256"}"#),
            e.encode(claims.to_string())
        )
    }

    #[test]
    fn reads_token_times_without_verifying() {
        let t = token_times(&jwt(json!({"iat": 100, "exp": 200}))).unwrap();
        assert_eq!(t.issued_at, Some(100));
        assert_eq!(t.expires_at, Some(200));
        assert!(!token_needs_refresh(t, 149));
        assert!(token_needs_refresh(t, 150));
        assert!(token_times("not-a-jwt").is_none());
        assert!(token_times("a.!!!.c").is_none());
    }

    #[test]
    fn usernames() {
        assert_eq!(
            tenant_of_username(&consumer_username("liqo-tenant-abc")),
            Some("liqo-tenant-abc")
        );
        assert_eq!(
            tenant_of_username("system:serviceaccount:default:liqo-consumer"),
            None
        );
        assert_eq!(tenant_of_username("kubernetes-admin"), None);
    }
}
