//! `spec.clusterSelector` of a NamespaceOffloading: which peers get the namespace.
//!
//! Two forms are accepted, never both in one selector:
//!
//! - **Liqo's**, a `NodeSelector`: `nodeSelectorTerms`, each a list of `matchExpressions`.
//!   Terms are ORed, the expressions of a term ANDed. Liqo evaluates it against its virtual
//!   nodes' labels; there are no virtual nodes here, so it is evaluated against the
//!   ForeignCluster's labels, which carry the provider's cluster labels (`liqoctl install
//!   --cluster-labels`). `liqoctl offload --selector` writes this form.
//! - **A label selector** (`matchLabels`, `matchExpressions`), this project's first form.
//!
//! Absent, empty, or with an empty `nodeSelectorTerms` list, it selects every peer (as in
//! Liqo). A term with no expression selects nothing (as a Kubernetes NodeSelector). Anything
//! the host cannot evaluate (`matchFields`, an unknown operator, `Gt` with a non-number) is an
//! [`InvalidSelector`] error: the namespace goes to no peer, never to every peer. The schema
//! refuses those at admission already; the host checks again for objects stored before.
//!
//! [`parse_term`] reads Liqo's `--selector` syntax (Kubernetes label query syntax) into a term.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which peers get an offloaded namespace (see the module documentation).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.nodeSelectorTerms) || (!has(self.matchLabels) && !has(self.matchExpressions))",
        "message": "clusterSelector: use nodeSelectorTerms (Liqo's form) or matchLabels/matchExpressions, not both"
    }
]))]
pub struct ClusterSelector {
    /// Liqo's form: the peer is selected when any term matches its labels (terms ORed, the
    /// expressions of a term ANDed). An empty list selects every peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub node_selector_terms: Option<Vec<ClusterSelectorTerm>>,

    /// Label selector form: labels the peer's ForeignCluster must have, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    pub match_labels: Option<BTreeMap<String, String>>,

    /// Label selector form: requirements on the peer's labels, ANDed (with `matchLabels` too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub match_expressions: Option<Vec<ClusterSelectorRequirement>>,
}

/// One term of Liqo's form: its expressions ANDed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.matchFields) || size(self.matchFields) == 0",
        "message": "matchFields is not supported: a peered cluster is selected by its labels only; use matchExpressions"
    }
]))]
pub struct ClusterSelectorTerm {
    /// Requirements on the peer's labels, all of which must hold. A term without any selects
    /// no peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub match_expressions: Vec<ClusterSelectorRequirement>,

    /// Not supported (a peer has no fields to match): accepted by the type so that a manifest
    /// using it is refused with a message rather than silently pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub match_fields: Option<Vec<ClusterSelectorRequirement>>,
}

/// A requirement on one label of the peer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(self.operator in ['In', 'NotIn']) || (has(self.values) && size(self.values) > 0)",
        "message": "values must list at least one value with the operators In and NotIn"
    },
    {
        "rule": "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",
        "message": "values must be empty with the operators Exists and DoesNotExist"
    },
    {
        "rule": "!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1 && self.values[0].matches('^-?[0-9]{1,18}$'))",
        "message": "values must hold exactly one integer with the operators Gt and Lt"
    }
]))]
pub struct ClusterSelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317))]
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: SelectorOperator,
    /// The values (`In`, `NotIn`: one or more; `Gt`, `Lt`: one integer; `Exists`,
    /// `DoesNotExist`: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 63)))]
    pub values: Vec<String>,
}

/// The operators of a requirement (those of a Kubernetes NodeSelector).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value is an integer greater than `values[0]`.
    Gt,
    /// The label's value is an integer less than `values[0]`.
    Lt,
    /// Any other word, as stored before the schema listed the operators (the API server
    /// refuses it now): read so that one such object does not stop the reading of every
    /// NamespaceOffloading, and refused by [`ClusterSelector::check`].
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// A selector the host cannot evaluate; the message names the field and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.clusterSelector{field}: {problem}")]
pub struct InvalidSelector {
    /// The path of the offending field below `spec.clusterSelector`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub problem: String,
}

impl ClusterSelector {
    /// Whether a peer with `labels` is selected. `None` (no selector) selects every peer.
    pub fn selects(
        selector: Option<&Self>,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, InvalidSelector> {
        let Some(sel) = selector else { return Ok(true) };
        sel.check()?;
        if let Some(terms) = &sel.node_selector_terms {
            if terms.is_empty() {
                return Ok(true);
            }
            return Ok(terms.iter().any(|term| term.matches(labels)));
        }
        let labels_ok = sel
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        let expressions_ok = sel
            .match_expressions
            .iter()
            .flatten()
            .all(|r| r.matches(labels));
        Ok(labels_ok && expressions_ok)
    }

    /// Refuses what [`ClusterSelector::selects`] cannot evaluate faithfully.
    pub fn check(&self) -> Result<(), InvalidSelector> {
        let invalid = |field: String, problem: &str| InvalidSelector {
            field,
            problem: problem.to_string(),
        };
        if self.node_selector_terms.is_some()
            && (self.match_labels.is_some() || self.match_expressions.is_some())
        {
            return Err(invalid(
                String::new(),
                "use nodeSelectorTerms (Liqo's form) or matchLabels/matchExpressions, not both",
            ));
        }
        for (t, term) in self.node_selector_terms.iter().flatten().enumerate() {
            if term.match_fields.as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(invalid(
                    format!(".nodeSelectorTerms[{t}].matchFields"),
                    "not supported: a peered cluster is selected by its labels only; use matchExpressions",
                ));
            }
            for (e, r) in term.match_expressions.iter().enumerate() {
                r.check().map_err(|p| {
                    invalid(format!(".nodeSelectorTerms[{t}].matchExpressions[{e}]"), &p)
                })?;
            }
        }
        for (e, r) in self.match_expressions.iter().flatten().enumerate() {
            r.check()
                .map_err(|p| invalid(format!(".matchExpressions[{e}]"), &p))?;
        }
        Ok(())
    }

    /// Whether this selector selects every peer whatever its labels (absent, empty, or an
    /// empty `nodeSelectorTerms` list).
    pub fn selects_every_peer(selector: Option<&Self>) -> bool {
        selector.is_none_or(|s| match &s.node_selector_terms {
            Some(terms) => terms.is_empty(),
            None => {
                s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                    && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
            }
        })
    }

    /// Liqo's form with these terms (what `liqoctl offload --selector` writes).
    pub fn from_terms(terms: Vec<ClusterSelectorTerm>) -> Self {
        Self {
            node_selector_terms: Some(terms),
            ..Self::default()
        }
    }

    /// A one-line rendering for messages, in `--selector` syntax: terms separated by ` OR `.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(terms) = &self.node_selector_terms {
            if terms.is_empty() {
                return "every peer".into();
            }
            parts.extend(terms.iter().map(|t| {
                let text = render(&t.match_expressions);
                if text.is_empty() {
                    "(nothing)".into()
                } else {
                    text
                }
            }));
            return parts.join(" OR ");
        }
        let mut requirements: Vec<ClusterSelectorRequirement> = self
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| ClusterSelectorRequirement {
                key: k.clone(),
                operator: SelectorOperator::In,
                values: vec![v.clone()],
            })
            .collect();
        requirements.extend(self.match_expressions.iter().flatten().cloned());
        let text = render(&requirements);
        if text.is_empty() {
            "every peer".into()
        } else {
            text
        }
    }
}

fn render(requirements: &[ClusterSelectorRequirement]) -> String {
    requirements
        .iter()
        .map(|r| match (r.operator, r.values.as_slice()) {
            (SelectorOperator::In, [v]) => format!("{}={v}", r.key),
            (SelectorOperator::NotIn, [v]) => format!("{}!={v}", r.key),
            (SelectorOperator::In, vs) => format!("{} in ({})", r.key, vs.join(",")),
            (SelectorOperator::NotIn, vs) => format!("{} notin ({})", r.key, vs.join(",")),
            (SelectorOperator::Exists, _) => r.key.clone(),
            (SelectorOperator::DoesNotExist, _) => format!("!{}", r.key),
            (SelectorOperator::Gt, vs) => format!("{}>{}", r.key, vs.join(",")),
            (SelectorOperator::Lt, vs) => format!("{}<{}", r.key, vs.join(",")),
            (SelectorOperator::Unknown, _) => format!("{} (unknown operator)", r.key),
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl ClusterSelectorTerm {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        // An empty term selects nothing, as in a Kubernetes NodeSelector.
        !self.match_expressions.is_empty()
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl ClusterSelectorRequirement {
    fn check(&self) -> Result<(), String> {
        use SelectorOperator::*;
        if self.key.is_empty() {
            return Err("key is empty".into());
        }
        match self.operator {
            Unknown => {
                Err("operator is not one of In, NotIn, Exists, DoesNotExist, Gt, Lt".to_string())
            }
            In | NotIn if self.values.is_empty() => Err(format!(
                "operator {:?} needs at least one value",
                self.operator
            )),
            Exists | DoesNotExist if !self.values.is_empty() => {
                Err(format!("operator {:?} takes no values", self.operator))
            }
            Gt | Lt if self.values.len() != 1 || self.values[0].parse::<i64>().is_err() => {
                Err(format!(
                    "operator {:?} takes exactly one integer value",
                    self.operator
                ))
            }
            _ => Ok(()),
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        use SelectorOperator::*;
        let value = labels.get(&self.key);
        let number = |v: &String| v.parse::<i64>().ok();
        let bound = self.values.first().and_then(number);
        match self.operator {
            In => value.is_some_and(|v| self.values.contains(v)),
            NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Exists => value.is_some(),
            DoesNotExist => value.is_none(),
            Gt => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v > b),
            Lt => matches!((value.and_then(number), bound), (Some(v), Some(b)) if v < b),
            Unknown => false,
        }
    }
}

/// Parses one `--selector` value (Kubernetes label query syntax, as Liqo's `liqoctl offload
/// --selector`) into a term: requirements separated by commas, ANDed. Accepted forms: `k=v`,
/// `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>n`, `k<n`. The error names the
/// requirement and says what is wrong.
pub fn parse_term(text: &str) -> Result<ClusterSelectorTerm, String> {
    let mut match_expressions = Vec::new();
    for part in split_requirements(text)? {
        match_expressions.push(parse_requirement(part.trim())?);
    }
    if match_expressions.is_empty() {
        return Err(format!(
            "{text:?} has no requirement: write key=value, key!=value, 'key in (a,b)', key or !key"
        ));
    }
    Ok(ClusterSelectorTerm {
        match_expressions,
        match_fields: None,
    })
}

/// Splits at the commas outside parentheses.
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("{text:?}: unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(format!("{text:?}: unbalanced parentheses"));
    }
    parts.push(&text[start..]);
    Ok(parts.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

fn parse_requirement(text: &str) -> Result<ClusterSelectorRequirement, String> {
    let requirement = |key: &str, operator, values: Vec<String>| {
        check_key(key.trim(), text)?;
        for v in &values {
            check_value(v, text)?;
        }
        Ok(ClusterSelectorRequirement {
            key: key.trim().to_string(),
            operator,
            values,
        })
    };
    if let Some(key) = text.strip_prefix('!') {
        return requirement(key, SelectorOperator::DoesNotExist, vec![]);
    }
    for (symbol, operator) in [
        ("!=", SelectorOperator::NotIn),
        ("==", SelectorOperator::In),
        ("=", SelectorOperator::In),
        (">", SelectorOperator::Gt),
        ("<", SelectorOperator::Lt),
    ] {
        if let Some((key, value)) = text.split_once(symbol) {
            let value = value.trim().to_string();
            if matches!(operator, SelectorOperator::Gt | SelectorOperator::Lt) {
                // The CRD's rule: an optional minus sign and 1 to 18 digits.
                let digits = value.strip_prefix('-').unwrap_or(&value);
                if digits.is_empty()
                    || digits.len() > 18
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(format!(
                        "{text:?}: {symbol} compares with an integer (at most 18 digits)"
                    ));
                }
                check_key(key.trim(), text)?;
                return Ok(ClusterSelectorRequirement {
                    key: key.trim().to_string(),
                    operator,
                    values: vec![value],
                });
            }
            return requirement(key, operator, vec![value]);
        }
    }
    let words: Vec<&str> = text.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words.as_slice() {
        let rest = rest.trim();
        let (operator, list) = if let Some(list) = rest.strip_prefix("notin") {
            (SelectorOperator::NotIn, list)
        } else if let Some(list) = rest.strip_prefix("in") {
            (SelectorOperator::In, list)
        } else {
            return Err(format!(
                "{text:?}: expected 'in (...)' or 'notin (...)' after the key {key:?}"
            ));
        };
        let list = list.trim();
        let Some(inner) = list.strip_prefix('(').and_then(|l| l.strip_suffix(')')) else {
            return Err(format!(
                "{text:?}: the values go in parentheses, as in 'key in (a,b)'"
            ));
        };
        let values: Vec<String> = inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(format!("{text:?}: the list of values is empty"));
        }
        return requirement(key, operator, values);
    }
    requirement(text, SelectorOperator::Exists, vec![])
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters
/// (letters, digits, `-`, `_`, `.`, starting and ending with a letter or digit).
fn check_key(key: &str, text: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty() && name.len() <= 63 && is_label_word(name);
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    });
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(format!(
            "{text:?}: {key:?} is not a label key (an optional DNS prefix and '/', then at most 63 \
             letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
        ))
    }
}

fn check_value(value: &str, text: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_label_word(value)) {
        Ok(())
    } else {
        Err(format!(
            "{text:?}: {value:?} is not a label value (at most 63 letters, digits, '-', '_' or \
             '.', starting and ending with a letter or digit)"
        ))
    }
}

fn is_label_word(word: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alnum(word.chars().next())
        && alnum(word.chars().last())
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(value: serde_json::Value) -> ClusterSelector {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn liqo_terms_are_ored_and_expressions_anded() {
        // Liqo's "Offloading with policies" tutorial's selector, and a second term.
        let sel = selector(json!({"nodeSelectorTerms": [
            {"matchExpressions": [
                {"key": "topology.liqo.io/region", "operator": "In", "values": ["south"]},
                {"key": "tier", "operator": "NotIn", "values": ["test"]}
            ]},
            {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
        ]}));
        let south = labels(&[("topology.liqo.io/region", "south")]);
        let south_test = labels(&[("topology.liqo.io/region", "south"), ("tier", "test")]);
        let center = labels(&[("topology.liqo.io/region", "center")]);
        let center_gpu = labels(&[("topology.liqo.io/region", "center"), ("gpu", "a100")]);
        let table = [
            (&south, true),
            (&south_test, false),
            (&center, false),
            (&center_gpu, true),
        ];
        for (l, want) in table {
            assert_eq!(ClusterSelector::selects(Some(&sel), l), Ok(want), "{l:?}");
        }
    }

    #[test]
    fn every_peer_without_a_selector_or_terms_and_none_with_an_empty_term() {
        let any = labels(&[("region", "x")]);
        assert_eq!(ClusterSelector::selects(None, &any), Ok(true));
        for every in [
            json!({}),
            json!({"nodeSelectorTerms": []}),
            json!({"matchLabels": {}}),
        ] {
            assert_eq!(
                ClusterSelector::selects(Some(&selector(every.clone())), &any),
                Ok(true),
                "{every}"
            );
        }
        // A term whose only content was pruned (or never written) is not "every peer".
        let emptied = selector(json!({"nodeSelectorTerms": [{}]}));
        assert_eq!(ClusterSelector::selects(Some(&emptied), &any), Ok(false));
    }

    #[test]
    fn operators() {
        let l = labels(&[("region", "south"), ("cpus", "64")]);
        let table = [
            (
                json!({"key": "region", "operator": "In", "values": ["north", "south"]}),
                true,
            ),
            (
                json!({"key": "region", "operator": "NotIn", "values": ["south"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "NotIn", "values": ["a"]}),
                true,
            ),
            (json!({"key": "region", "operator": "Exists"}), true),
            (json!({"key": "zone", "operator": "DoesNotExist"}), true),
            (
                json!({"key": "cpus", "operator": "Gt", "values": ["32"]}),
                true,
            ),
            (
                json!({"key": "cpus", "operator": "Lt", "values": ["32"]}),
                false,
            ),
            (
                json!({"key": "region", "operator": "Gt", "values": ["1"]}),
                false,
            ),
            (
                json!({"key": "zone", "operator": "Lt", "values": ["1"]}),
                false,
            ),
        ];
        for (requirement, want) in table {
            let sel = selector(
                json!({"nodeSelectorTerms": [{"matchExpressions": [requirement.clone()]}]}),
            );
            assert_eq!(
                ClusterSelector::selects(Some(&sel), &l),
                Ok(want),
                "{requirement}"
            );
        }
    }

    #[test]
    fn label_selector_form() {
        let sel = selector(json!({
            "matchLabels": {"region": "south"},
            "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]
        }));
        assert_eq!(
            ClusterSelector::selects(Some(&sel), &labels(&[("region", "south")])),
            Ok(true)
        );
        assert_eq!(
            ClusterSelector::selects(Some(&sel), &labels(&[("region", "south"), ("tier", "x")])),
            Ok(false)
        );
    }

    #[test]
    fn what_cannot_be_evaluated_is_an_error_naming_the_field() {
        let any = labels(&[("region", "south")]);
        let table = [
            (
                json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}]}),
                "spec.clusterSelector.nodeSelectorTerms[0].matchFields: not supported",
            ),
            (
                json!({"nodeSelectorTerms": [{"matchExpressions": [{"key": "region", "operator": "In"}]}]}),
                "spec.clusterSelector.nodeSelectorTerms[0].matchExpressions[0]: operator In needs at least one value",
            ),
            (
                json!({"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["many"]}]}),
                "spec.clusterSelector.matchExpressions[0]: operator Gt takes exactly one integer value",
            ),
            (
                json!({"nodeSelectorTerms": [], "matchLabels": {"a": "b"}}),
                "spec.clusterSelector: use nodeSelectorTerms",
            ),
        ];
        for (sel, want) in table {
            let err = ClusterSelector::selects(Some(&selector(sel.clone())), &any).unwrap_err();
            assert!(err.to_string().starts_with(want), "{sel}: {err}");
        }
        // An unknown operator (stored before the schema listed them) reads, and is refused.
        let stored = selector(json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "a", "operator": "Like", "values": ["x"]}
        ]}]}));
        let err = ClusterSelector::selects(Some(&stored), &any).unwrap_err();
        assert!(
            err.to_string()
                .contains("matchExpressions[0]: operator is not one of"),
            "{err}"
        );
    }

    #[test]
    fn parses_liqos_selector_syntax() {
        let req = |key: &str, operator, values: &[&str]| ClusterSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        };
        use SelectorOperator::*;
        let table = [
            (
                "topology.liqo.io/region=south",
                vec![req("topology.liqo.io/region", In, &["south"])],
            ),
            ("region==south", vec![req("region", In, &["south"])]),
            ("region!=south", vec![req("region", NotIn, &["south"])]),
            (
                "region in (south, center),tier notin (test)",
                vec![
                    req("region", In, &["south", "center"]),
                    req("tier", NotIn, &["test"]),
                ],
            ),
            (
                "gpu,!spot",
                vec![req("gpu", Exists, &[]), req("spot", DoesNotExist, &[])],
            ),
            (
                "cpus>8, cpus<128",
                vec![req("cpus", Gt, &["8"]), req("cpus", Lt, &["128"])],
            ),
            ("temp>-5", vec![req("temp", Gt, &["-5"])]),
        ];
        for (text, want) in table {
            assert_eq!(parse_term(text).unwrap().match_expressions, want, "{text}");
        }
    }

    #[test]
    fn refuses_malformed_selectors_saying_why() {
        let table = [
            ("", "has no requirement"),
            ("region in south", "the values go in parentheses"),
            ("region in ()", "the list of values is empty"),
            ("region in (a", "unbalanced parentheses"),
            ("region=So uth", "is not a label value"),
            ("Region_/x=y", "is not a label key"),
            ("region like south", "expected 'in (...)' or 'notin (...)'"),
            ("cpus>many", "compares with an integer"),
            ("cpus>+5", "compares with an integer"),
            ("cpus>1234567890123456789", "compares with an integer"),
        ];
        for (text, want) in table {
            let err = parse_term(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn describe_uses_the_selector_syntax() {
        let sel = ClusterSelector::from_terms(vec![
            parse_term("region=south,tier notin (test)").unwrap(),
            parse_term("gpu").unwrap(),
        ]);
        assert_eq!(sel.describe(), "region=south,tier!=test OR gpu");
        assert_eq!(ClusterSelector::default().describe(), "every peer");
    }

    #[test]
    fn schema_refuses_what_the_host_cannot_evaluate() {
        let schema = serde_json::to_value(schemars::schema_for!(ClusterSelector)).unwrap();
        let text = schema.to_string();
        for needle in [
            "matchFields is not supported",
            "not both",
            "exactly one integer",
        ] {
            assert!(text.contains(needle), "{needle} missing from the schema");
        }
    }
}
