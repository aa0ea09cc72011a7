//! Built-in reflection plugin for core `v1` Services.
//!
//! Follows Liqo's field rules (LIQO-REFERENCE.md §2.2): the remote Service keeps the local
//! Service's name, type, selector, ports and policies, and lets the remote cluster allocate its
//! own addresses and ports. See `plugins/README.md` for the rule table and the deliberate
//! differences from Liqo.
//!
//! The transform is plain Rust ([`reflect`], [`reflect_json`], [`manifest`]) so it runs natively
//! in tests and benchmarks; the `component` module (wasm32 only) exports it through the
//! `kind-reflector` world of `wit/reflection.wit`.

mod manifest;
mod reflect;
mod spec;

#[cfg(target_arch = "wasm32")]
mod component;

pub use manifest::manifest;
pub use reflect::{reflect, reflect_json};
