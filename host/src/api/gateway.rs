//! Names of the objects that describe this cluster's gateway (see `docs/transport.md`).
//!
//! Both live in namespace `liqo` ([`super::identity::CLUSTER_IDENTITY_NAMESPACE`]):
//!
//! - the Secret [`GATEWAY_IDENTITY_SECRET`] (type `kubernetes.io/tls`) holds the gateway's
//!   self-signed certificate and private key. `liqoctl install` creates it once and never
//!   replaces it: peers pin the certificate's fingerprint, so a new certificate would break every
//!   peering until it is re-peered. `liqoctl uninstall` deletes it.
//! - the ConfigMap [`GATEWAY_CONFIGMAP`] is written by the host while its gateway runs. It
//!   announces what a consumer needs to reach Services through this cluster's gateway;
//!   `liqoctl generate peer-command` copies it into the peer command. Everything in it is public
//!   (a fingerprint identifies a certificate, it grants nothing).

/// Name of the Secret holding this cluster's gateway identity (certificate and private key).
pub const GATEWAY_IDENTITY_SECRET: &str = "liqo-gateway-identity";
/// Type of the [`GATEWAY_IDENTITY_SECRET`] Secret.
pub const GATEWAY_IDENTITY_SECRET_TYPE: &str = "kubernetes.io/tls";
/// Key of the [`GATEWAY_IDENTITY_SECRET`] Secret holding the certificate (PEM), as in every
/// `kubernetes.io/tls` Secret.
pub const GATEWAY_IDENTITY_CERT_KEY: &str = "tls.crt";
/// Key of the [`GATEWAY_IDENTITY_SECRET`] Secret holding the private key (PEM). Never logged or
/// printed.
pub const GATEWAY_IDENTITY_KEY_KEY: &str = "tls.key";

/// Name of the ConfigMap in which the host announces its running gateway.
pub const GATEWAY_CONFIGMAP: &str = "liqo-gateway";
/// Key of the [`GATEWAY_CONFIGMAP`] ConfigMap: the SHA-256 fingerprint of the gateway's
/// certificate, 64 lowercase hex digits.
pub const GATEWAY_CONFIGMAP_FINGERPRINT_KEY: &str = "fingerprint";
/// Key of the [`GATEWAY_CONFIGMAP`] ConfigMap: `IP:PORT` inside this cluster where the gateway
/// accepts connections for the Services reflected here (what reflected EndpointSlices point at).
pub const GATEWAY_CONFIGMAP_ENDPOINT_KEY: &str = "serviceEndpoint";
