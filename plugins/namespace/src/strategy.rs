//! Namespace mapping strategies and the names they produce.

use liqo_plugin_sdk::{MAX_DNS1123_LABEL_LEN, validate_dns1123_label};

use crate::hash::short_hash;

/// Length of the hash suffix ([`short_hash`]) added to names that had to be shortened or
/// rewritten.
const HASH_SUFFIX_LEN: usize = 8;

/// How the remote namespace is named (`spec.namespaceMappingStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MappingStrategy {
    /// The remote namespace has the local namespace's name, so
    /// `svc.namespace.svc.cluster.local` resolves the same in both clusters.
    EnforceSameName,
    /// `<namespace>-<local cluster id>`, unique per consumer (Liqo's default).
    #[default]
    DefaultName,
    /// The name in `spec.remoteNamespaceName`.
    SelectedName,
}

impl MappingStrategy {
    /// Every strategy, in the order they are listed to users.
    pub const ALL: [MappingStrategy; 3] =
        [Self::EnforceSameName, Self::DefaultName, Self::SelectedName];

    /// The name used in NamespaceOffloading specs and on the `liqoctl` command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::EnforceSameName => "EnforceSameName",
            Self::DefaultName => "DefaultName",
            Self::SelectedName => "SelectedName",
        }
    }

    /// Parses a strategy name (exact spelling); the error lists the valid values.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown namespaceMappingStrategy \"{text}\": valid values are {}; set \
                 --namespace-mapping-strategy to one of them",
                    Self::ALL.map(|strategy| strategy.as_str()).join(", ")
                )
            })
    }
}

/// The `DefaultName` remote name: `<namespace>-<cluster_id>` when that is a valid DNS-1123 label.
///
/// Otherwise, deterministically: lower-case it, replace every character that is not a lower-case
/// letter, digit or `-` with `-`, trim `-` from both ends, cut it so that `-` plus an 8-digit hash
/// of the *original* `<namespace>-<cluster_id>` fits in 63 characters, and append that hash.
/// The hash keeps distinct inputs distinct even when they shorten or rewrite to the same prefix.
pub fn default_name(namespace: &str, cluster_id: &str) -> String {
    let joined = format!("{namespace}-{cluster_id}");
    if validate_dns1123_label(&joined).is_ok() {
        return joined;
    }
    let hash = short_hash(&joined);
    let room = MAX_DNS1123_LABEL_LEN - HASH_SUFFIX_LEN - 1;
    // Characters, not byte slicing: no panic path in the component.
    let sanitized: String = joined
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| *c == '-')
        .take(room)
        .collect();
    let prefix = sanitized.trim_end_matches('-');
    if prefix.is_empty() {
        hash
    } else {
        format!("{prefix}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_round_trip() {
        for strategy in MappingStrategy::ALL {
            assert_eq!(MappingStrategy::parse(strategy.as_str()).unwrap(), strategy);
        }
        assert_eq!(MappingStrategy::default(), MappingStrategy::DefaultName);
    }
}
