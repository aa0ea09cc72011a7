//! `-o yaml|json`, as kubectl users expect.

use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;

/// Output formats of commands that print objects.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    /// YAML, like `kubectl get -o yaml`.
    Yaml,
    /// JSON, like `kubectl get -o json`.
    Json,
}

/// Prints `value` in `format`.
pub fn print<T: Serialize>(value: &T, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(value)?),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

/// Prints several objects as `kubectl get -o` does: YAML documents separated by `---`, or one
/// JSON `List` (both readable by `kubectl apply -f -`).
pub fn print_list<T: Serialize>(items: &[T], format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Yaml => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{}", serde_yaml_ng::to_string(item)?);
            }
        }
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": items,
            }))?
        ),
    }
    Ok(())
}

/// Prints the field of `value` at the dotted `path` (`role`, `reflected.Service`,
/// `offloadedNamespaces.0.namespace`), as `liqoctl info --get` does: a string or number bare,
/// anything else in `format` (YAML by default). `what` names the document in errors.
pub fn print_field(
    value: &serde_json::Value,
    path: &str,
    format: Option<OutputFormat>,
    what: &str,
) -> Result<()> {
    let field = field(value, path).map_err(|e| anyhow::anyhow!("--get {path}: {e} in {what}"))?;
    match field {
        serde_json::Value::String(s) => println!("{s}"),
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Null => {
            println!("{field}")
        }
        other => print(other, format.unwrap_or(OutputFormat::Yaml))?,
    }
    Ok(())
}

/// The field of `value` at the dotted `path`, or what is there instead.
fn field<'a>(value: &'a serde_json::Value, path: &str) -> Result<&'a serde_json::Value, String> {
    let mut here = value;
    let mut walked = Vec::new();
    for step in path.split('.') {
        let next = match here {
            serde_json::Value::Object(map) => map.get(step).ok_or_else(|| {
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                format!(
                    "no field {step:?}{} (fields there: {})",
                    if walked.is_empty() {
                        String::new()
                    } else {
                        format!(" under {}", walked.join("."))
                    },
                    keys.join(", ")
                )
            })?,
            serde_json::Value::Array(items) => step
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .ok_or_else(|| {
                    format!(
                        "{} is a list of {} items: {step:?} is not an index of it",
                        walked.join("."),
                        items.len()
                    )
                })?,
            _ => {
                return Err(format!(
                    "{} is a value, not an object: nothing under it",
                    walked.join(".")
                ));
            }
        };
        walked.push(step);
        here = next;
    }
    Ok(here)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_reach_fields_and_say_what_is_there_instead() {
        let v = json!({"role": "Provider", "reflected": {"Service": 2},
                       "offloadedNamespaces": [{"namespace": "liqo-demo"}]});
        assert_eq!(field(&v, "role").unwrap(), "Provider");
        assert_eq!(field(&v, "reflected.Service").unwrap(), 2);
        assert_eq!(
            field(&v, "offloadedNamespaces.0.namespace").unwrap(),
            "liqo-demo"
        );
        let e = field(&v, "rol").unwrap_err();
        assert!(e.contains("no field \"rol\"") && e.contains("role"), "{e}");
        let e = field(&v, "reflected.Pod").unwrap_err();
        assert!(
            e.contains("under reflected") && e.contains("Service"),
            "{e}"
        );
        let e = field(&v, "offloadedNamespaces.3").unwrap_err();
        assert!(e.contains("list of 1 items"), "{e}");
        let e = field(&v, "role.x").unwrap_err();
        assert!(e.contains("role is a value"), "{e}");
    }
}
