//! Kubernetes name rules the host and liqoctl check before they write.

/// Checks a DNS-1123 label (namespace names): lower-case alphanumerics and '-', starting and
/// ending with an alphanumeric, at most 63 characters.
pub fn validate_dns1123_label(name: &str) -> Result<(), String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if name.is_empty()
        || name.len() > 63
        || !valid_chars
        || !alnum(name.bytes().next())
        || !alnum(name.bytes().last())
    {
        return Err(format!(
            "{name:?} is not a valid namespace name: use at most 63 lower-case letters, digits \
             and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "liqo-demo", "a1", &"a".repeat(63)] {
            assert!(validate_dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(validate_dns1123_label(bad).is_err(), "{bad}");
        }
    }
}
