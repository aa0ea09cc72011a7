//! Cross-cluster gateway: carries TCP connections from one cluster to Services of a peer
//! cluster over a single mutually authenticated TLS 1.3 link per peer.
//!
//! # Protocol
//!
//! - **Link.** The importing side dials the exporting side's link listener (TCP, then TLS 1.3
//!   with ALPN `h2`). Both present self-signed certificates ([`Identity`]); each accepts only the
//!   certificate whose SHA-256 [`Fingerprint`] was pinned for the peer at peering time
//!   ([`tls`]). On top runs one HTTP/2 connection; the dialer is the HTTP/2 client, so streams
//!   flow from importer to exporter. Two clusters that import from each other have one link per
//!   direction.
//! - **Streams.** Each forwarded TCP connection is one HTTP/2 `CONNECT` stream whose
//!   `:authority` names a [`Target`] as `SERVICE.NAMESPACE:PORT` — never an address. The exporter
//!   looks it up in its [`ExportTable`]: `200` and then raw bytes both ways, or `404` (not
//!   exported), `400` (malformed), `502`/`504` (target unreachable), with the reason in the
//!   `x-liqo-gateway-reason` header and body. A peer can only reach exported Services.
//! - **Ends.** A clean end in one direction is a half-close (END_STREAM / TCP shutdown); any
//!   error resets both sides (RST_STREAM and a TCP RST with SO_LINGER 0), so a truncated
//!   transfer is never seen as complete. Connections accepted while the link is down are reset
//!   at once.
//! - **Liveness.** Both ends send an HTTP/2 PING every [`Options::ping_interval`]; the answer
//!   gives the RTT in [`LinkState::Up`]; no answer within [`Options::ping_timeout`] drops the
//!   link (resetting its streams). The dialer redials with exponential backoff and jitter.
//!
//! # Use
//!
//! [`Gateway`] is driven by tables the caller replaces at any time: [`Gateway::set_peers`],
//! [`Gateway::set_exports`], [`Gateway::set_imports`]; [`Gateway::link_state`] reports each
//! link. Instead of (or besides) one import listener per Service, [`Gateway::listen_services`]
//! opens one port for all reflected Services: kube-proxy DNATs their ClusterIPs to it, and a
//! [`ServiceResolver`] maps each connection's [`original_destination`] to a peer and target. The `liqo-gateway` binary drives it from a [`config::Config`] file.

#![warn(missing_docs)]

pub mod config;
pub mod duration;
mod gateway;
pub mod identity;
pub mod metrics;
mod original_dst;
mod pump;
pub mod target;
pub mod tls;

pub use gateway::{Gateway, GatewayError, LinkState, Options, PeerConfig, REASON_HEADER};
pub use identity::{Fingerprint, Identity, IdentityError};
pub use original_dst::original_destination;
pub use pump::SpliceError;
pub use target::{ExportTable, ImportRule, InvalidTarget, ServiceResolver, ServiceRoute, Target};
