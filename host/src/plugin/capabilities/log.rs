//! `host.log`: structured logging through the host's `tracing` subscriber, tagged with the
//! plugin name so a line can always be traced back to the component that wrote it.

use super::super::bindings::wit_host::LogLevel;

/// Longest message kept from one guest log call; a plugin cannot flood the host's logs with
/// megabyte lines.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Emits one guest log line.
pub fn emit(plugin: &str, level: LogLevel, message: &str, fields: &[(String, String)]) {
    let message = truncate(message, MAX_MESSAGE_BYTES);
    let fields = FieldList(fields);
    match level {
        LogLevel::Trace => tracing::trace!(plugin, %fields, "{message}"),
        LogLevel::Debug => tracing::debug!(plugin, %fields, "{message}"),
        LogLevel::Info => tracing::info!(plugin, %fields, "{message}"),
        LogLevel::Warn => tracing::warn!(plugin, %fields, "{message}"),
        LogLevel::Error => tracing::error!(plugin, %fields, "{message}"),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct FieldList<'a>(&'a [(String, String)]);

impl std::fmt::Display for FieldList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={}", truncate(v, MAX_MESSAGE_BYTES))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }

    #[test]
    fn formats_fields_as_key_value_pairs() {
        let f = [
            ("a".to_string(), "1".to_string()),
            ("b".into(), "x y".into()),
        ];
        assert_eq!(FieldList(&f).to_string(), "a=1 b=x y");
    }
}
