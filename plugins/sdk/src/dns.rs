//! DNS-1123 label validation (the rule for Namespace names).

/// Longest valid DNS-1123 label.
pub const MAX_DNS1123_LABEL_LEN: usize = 63;

/// Checks that `name` is a DNS-1123 label: 1 to 63 characters, lower-case letters, digits and
/// `-`, starting and ending with a letter or digit. The error says what is wrong.
pub fn validate_dns1123_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a DNS-1123 label must not be empty".to_owned());
    }
    if name.len() > MAX_DNS1123_LABEL_LEN {
        return Err(format!(
            "\"{name}\" is {} characters long; a DNS-1123 label has at most {MAX_DNS1123_LABEL_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "\"{name}\" contains '{bad}'; a DNS-1123 label has only lower-case letters, digits and '-'"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "\"{name}\" must start and end with a lower-case letter or digit"
        ));
    }
    Ok(())
}

/// Whether `name` is a valid DNS-1123 label.
pub fn is_dns1123_label(name: &str) -> bool {
    validate_dns1123_label(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_labels() {
        for name in ["a", "liqo-demo", "0abc", "a-b-c-9", &"x".repeat(63)] {
            assert!(is_dns1123_label(name), "{name}");
        }
    }

    #[test]
    fn rejects_invalid_labels_with_reasons() {
        let cases = [
            ("", "must not be empty"),
            ("Liqo", "contains 'L'"),
            ("a_b", "contains '_'"),
            ("a.b", "contains '.'"),
            ("-a", "start and end"),
            ("a-", "start and end"),
            ("ü", "contains 'ü'"),
        ];
        for (name, reason) in cases {
            let error = validate_dns1123_label(name).unwrap_err();
            assert!(error.contains(reason), "{name:?}: {error}");
        }
        assert!(
            validate_dns1123_label(&"x".repeat(64))
                .unwrap_err()
                .contains("at most 63")
        );
    }
}
