//! The reflection engine.
//!
//! For every (peer, offloaded namespace, plugin kind) the engine keeps the remote copies equal
//! to what the plugin decides for the local objects:
//!
//! - one shared watch and cache per local kind (cluster-wide, not one per namespace);
//! - one watch per twin namespace and kind in each peer (to correct drift, sweep orphans and
//!   see objects that are not ours);
//! - one work queue keyed by (peer, local namespace, kind, name), deduplicated, with bounded
//!   workers and per-key exponential backoff;
//! - each pass: plugin call → host invariants → server-side apply with field manager
//!   `reflection.liqo.io`, skipped when the remote copy already holds the intent
//!   ([`intent`]); deletion with a UID precondition when the local object is gone or skipped;
//!   objects that are not ours are never touched.

pub(crate) mod cached;
pub mod engine;
mod event_budget;
pub mod intent;
pub(crate) mod kind_rules;
pub mod metrics;
pub mod queue;
mod reads;
mod reconcile;
mod stores;

pub use engine::{Engine, EngineConfig, FailureMode, InstallError, PeerHandle, Release};
pub use kind_rules::SERVICE_KIND_KEY;
pub use metrics::EngineMetrics;
