//! Which objects each reflection read through `host.get-object`, so that a change re-evaluates
//! exactly the objects whose plugin output can depend on it.
//!
//! A plugin is a pure function of its object, its configuration, what it reads and the address
//! translation. When a Service changes, only the EndpointSlices whose last evaluation read that
//! Service can come out differently. Re-evaluating every EndpointSlice of the namespace instead
//! (what the manifest's `triggers` literally say) costs O(slices) per Service change, O(n²) for a
//! namespace under churn: at 200 Services/s it was the host's bottleneck.
//!
//! Ordering argument (why no change is missed): a read is recorded *before* the cache is read,
//! and a watch reports a change only *after* its cache holds it. So for a change racing with a
//! pass, either the change's lookup finds the recorded read (and the key is queued again, which
//! the work queue defers until the running pass ends), or the change was in the cache before the
//! read, which then saw it. A read of an object that does not exist is recorded too: its
//! creation re-evaluates the reader.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::engine::{ReflectKey, kind_key};
use crate::plugin::{KindRef, ObjectReader};

/// One object a plugin asked for: `group/version/kind`, namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ReadTarget {
    pub kind: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

#[derive(Default)]
struct Index {
    /// Read object → keys whose latest pass read it.
    readers: HashMap<ReadTarget, HashSet<ReflectKey>>,
    /// Key → what its latest pass read, to undo it on the next pass.
    reads: HashMap<ReflectKey, Vec<ReadTarget>>,
}

/// The read dependencies of every key's latest pass.
#[derive(Default)]
pub(crate) struct ReadIndex {
    index: Mutex<Index>,
}

impl ReadIndex {
    /// Forgets what `key`'s previous pass read; called when a pass starts.
    pub fn forget(&self, key: &ReflectKey) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let Some(targets) = index.reads.remove(key) else {
            return;
        };
        for target in targets {
            if let Some(readers) = index.readers.get_mut(&target) {
                readers.remove(key);
                if readers.is_empty() {
                    index.readers.remove(&target);
                }
            }
        }
    }

    /// Records that `key`'s current pass reads `target`.
    pub fn record(&self, key: &ReflectKey, target: ReadTarget) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let reads = index.reads.entry(key.clone()).or_default();
        if reads.contains(&target) {
            return;
        }
        reads.push(target.clone());
        index.readers.entry(target).or_default().insert(key.clone());
    }

    /// The keys whose latest pass read the object `kind` `namespace/name`.
    pub fn readers_of(&self, kind: &str, namespace: &str, name: &str) -> Vec<ReflectKey> {
        let target = ReadTarget {
            kind: Arc::from(kind),
            namespace: Arc::from(namespace),
            name: Arc::from(name),
        };
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .readers
            .get(&target)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of keys with recorded reads (for tests and metrics).
    #[cfg(test)]
    pub fn tracked_keys(&self) -> usize {
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reads
            .len()
    }
}

/// The reader a pass hands to its plugin: records each read for `key`, then reads `inner`.
pub(crate) struct TrackingReader {
    pub inner: Arc<dyn ObjectReader>,
    pub index: Arc<ReadIndex>,
    pub key: ReflectKey,
}

impl ObjectReader for TrackingReader {
    fn get(&self, kind: &KindRef, namespace: &str, name: &str) -> Result<Option<String>, String> {
        // Record first: see the module docs for why the order matters.
        self.index.record(
            &self.key,
            ReadTarget {
                kind: Arc::from(kind_key(&kind.group, &kind.version, &kind.kind)),
                namespace: Arc::from(namespace),
                name: Arc::from(name),
            },
        );
        self.inner.get(kind, namespace, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ReflectKey {
        ReflectKey {
            peer: Arc::from("newyork"),
            namespace: Arc::from("demo"),
            kind: Arc::from("discovery.k8s.io/v1/EndpointSlice"),
            name: Arc::from(name),
        }
    }

    fn service(name: &str) -> ReadTarget {
        ReadTarget {
            kind: Arc::from("/v1/Service"),
            namespace: Arc::from("demo"),
            name: Arc::from(name),
        }
    }

    #[test]
    fn a_change_finds_only_the_keys_that_read_it() {
        let index = ReadIndex::default();
        index.record(&key("web-abc"), service("web"));
        index.record(&key("web-def"), service("web"));
        index.record(&key("db-xyz"), service("db"));
        let mut readers: Vec<String> = index
            .readers_of("/v1/Service", "demo", "web")
            .into_iter()
            .map(|k| k.name.to_string())
            .collect();
        readers.sort();
        assert_eq!(readers, ["web-abc", "web-def"]);
        assert!(index.readers_of("/v1/Service", "other", "web").is_empty());
        assert!(index.readers_of("/v1/Service", "demo", "api").is_empty());
    }

    #[test]
    fn a_new_pass_replaces_what_the_previous_one_read() {
        let index = ReadIndex::default();
        index.record(&key("slice"), service("old"));
        index.record(&key("slice"), service("old"));
        index.forget(&key("slice"));
        index.record(&key("slice"), service("new"));
        assert!(index.readers_of("/v1/Service", "demo", "old").is_empty());
        assert_eq!(index.readers_of("/v1/Service", "demo", "new").len(), 1);
        index.forget(&key("slice"));
        assert_eq!(index.tracked_keys(), 0);
        assert!(index.readers_of("/v1/Service", "demo", "new").is_empty());
    }

    #[test]
    fn the_tracking_reader_records_reads_of_missing_objects_too() {
        struct Empty;
        impl ObjectReader for Empty {
            fn get(&self, _: &KindRef, _: &str, _: &str) -> Result<Option<String>, String> {
                Ok(None)
            }
        }
        let index = Arc::new(ReadIndex::default());
        let reader = TrackingReader {
            inner: Arc::new(Empty),
            index: index.clone(),
            key: key("slice"),
        };
        let kind = KindRef {
            group: String::new(),
            version: "v1".into(),
            kind: "Service".into(),
            plural: "services".into(),
            namespaced: true,
        };
        assert_eq!(reader.get(&kind, "demo", "web"), Ok(None));
        assert_eq!(index.readers_of("/v1/Service", "demo", "web").len(), 1);
    }
}
