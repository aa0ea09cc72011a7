//! The peering protocol: everything a consumer and a provider exchange through the provider's
//! API server, and the operations both hosts and `liqoctl` perform on it. It is the one owner
//! of the protocol's rules; the controllers that run it ([`crate::peering`] on the consumer,
//! [`crate::tenant`] and [`crate::twins`] on the provider) call in here and never into each
//! other. The names that cross the boundary (labels, annotations, keys) are in
//! [`crate::api::wire`].
//!
//! A peering, step by step:
//!
//! 1. `liqoctl generate peer-command` on the provider [`provision()`]s an identity: a tenant
//!    namespace with a Lease, a ServiceAccount, a NamespaceMap and a Role, and a bound token.
//! 2. `liqoctl peer` on the consumer claims the Lease ([`lease::renew_lease`]) and stores the
//!    credential; the consumer's host then renews the Lease every 10 s (announcing its gateway
//!    and [`endpoint_ranges`]) and replaces the token past half its lifetime
//!    ([`identity::token_needs_refresh`], [`identity::request_token`]).
//! 3. The consumer asks for twin namespaces through the NamespaceMap's spec
//!    ([`twin_requests`]); the provider answers in its status, with its [`limits`] and its
//!    [`cluster_labels`].
//! 4. The data path follows the ForeignCluster's `spec.networking` ([`networking`]).
//! 5. `liqoctl unpeer` releases the Lease ([`lease::release_lease`]); the provider then
//!    [`revoke`]s the identity, as it does when the Lease goes stale ([`lease::lease_state`]).

pub mod cluster_labels;
pub mod endpoint_ranges;
pub mod identity;
pub mod lease;
pub mod limits;
pub mod networking;
pub mod provision;
pub mod twin_requests;

pub use provision::{Provisioned, TenantError, provision, revoke, twin_namespaces};
