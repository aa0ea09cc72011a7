//! Pure helpers of the peering commands: checking what the user typed (URL, CA, token, names),
//! rendering the peer command, and turning connection errors into one sentence. No I/O here, so
//! all of it is unit-tested.

use base64::Engine as _;
use liqo_host::api::identity::is_label_value;
use liqo_host::tenant;

/// What is wrong with the input of `liqoctl peer out-of-band` (checked before any request).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    /// `--api-server-url` does not parse or is not `https://host[:port]`.
    #[error(
        "--api-server-url {url:?} is not a valid API server URL ({reason}): pass https://HOST:PORT as printed by `liqoctl generate peer-command`"
    )]
    Url {
        /// What was given.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// `--ca-data` is not base64.
    #[error(
        "--ca-data is not valid base64 ({0}): copy it unchanged from the output of `liqoctl generate peer-command`"
    )]
    CaBase64(String),
    /// `--ca-data` decodes to something without a PEM certificate.
    #[error(
        "--ca-data does not contain a PEM certificate (-----BEGIN CERTIFICATE-----): copy it unchanged from the output of `liqoctl generate peer-command`"
    )]
    CaPem,
    /// `--token` is not a JWT.
    #[error(
        "--token is not a ServiceAccount token (a JWT): copy it unchanged from the output of `liqoctl generate peer-command`"
    )]
    TokenFormat,
    /// `--token` has expired.
    #[error(
        "--token expired at {0}: run `liqoctl generate peer-command` on the provider again for a fresh command"
    )]
    TokenExpired(String),
    /// `--cluster-id` is not a label value.
    #[error(
        "--cluster-id {0:?} is not a valid cluster id (at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
    )]
    ClusterId(String),
    /// The peering name is not a valid object name.
    #[error(
        "peering name {0:?} is not valid: use lowercase letters, digits and '-' (at most 63 characters), for example newyork"
    )]
    Name(String),
}

/// Checks an API server URL: `https`, a host, nothing after the port but an optional path.
pub fn check_url(url: &str) -> Result<String, InputError> {
    let err = |reason: &str| InputError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = url::Url::parse(url.trim()).map_err(|e| err(&e.to_string()))?;
    if parsed.scheme() != "https" {
        return Err(err("the scheme must be https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(err("no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(err("no query or fragment allowed"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Decodes `--ca-data`: base64 of a PEM bundle. Returns the PEM text and the DER certificates.
pub fn decode_ca(data: &str) -> Result<(String, Vec<Vec<u8>>), InputError> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| InputError::CaBase64(e.to_string()))?;
    let pem = String::from_utf8(bytes).map_err(|_| InputError::CaPem)?;
    let ders = pem_certificates(&pem);
    if ders.is_empty() {
        return Err(InputError::CaPem);
    }
    Ok((pem, ders))
}

/// The DER bytes of every `CERTIFICATE` block of a PEM text (invalid blocks are skipped).
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let Some(end) = body.find(END) else { break };
        let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64)
            && !der.is_empty()
        {
            out.push(der);
        }
        rest = &body[end + END.len()..];
    }
    out
}

/// PEM text of DER certificates (what a kubeconfig's `certificate-authority-data` decodes to).
pub fn der_to_pem(ders: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for der in ders {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Checks `--token` is a JWT that has not expired at `now` (seconds since the epoch). The
/// signature is not verified: the provider does that; this only gives a clear error early.
pub fn check_token(token: &str, now: i64) -> Result<(), InputError> {
    let times = tenant::token_times(token).ok_or(InputError::TokenFormat)?;
    if let Some(exp) = times.expires_at
        && exp <= now
    {
        let when = k8s_openapi::jiff::Timestamp::from_second(exp)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| exp.to_string());
        return Err(InputError::TokenExpired(when));
    }
    Ok(())
}

/// Checks `--cluster-id`.
pub fn check_cluster_id(id: &str) -> Result<(), InputError> {
    if id.is_empty() || !is_label_value(id) {
        return Err(InputError::ClusterId(id.to_string()));
    }
    Ok(())
}

/// Checks a peering name (it names the ForeignCluster and the credential Secret).
pub fn check_name(name: &str) -> Result<(), InputError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InputError::Name(name.to_string()))
    }
}

/// The name of the provider in the peer command: its cluster name when that is a valid peering
/// name, else its id lowercased when that is, else `provider`.
pub fn peering_name(cluster_name: &str, cluster_id: &str) -> String {
    [cluster_name.to_string(), cluster_id.to_ascii_lowercase()]
        .into_iter()
        .find(|n| check_name(n).is_ok())
        .unwrap_or_else(|| "provider".to_string())
}

/// The peer command line printed by `liqoctl generate peer-command`.
pub fn peer_command(name: &str, url: &str, ca_pem: &str, cluster_id: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    [
        "liqoctl",
        "peer",
        "out-of-band",
        name,
        "--api-server-url",
        url,
        "--ca-data",
        &ca,
        "--cluster-id",
        cluster_id,
        "--token",
        token,
    ]
    .iter()
    .map(|w| shell_word(w))
    .collect::<Vec<_>>()
    .join(" ")
}

/// `word` quoted for a POSIX shell when it has characters the shell would interpret.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'+')
        });
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// One sentence for a failed request to the provider, from the error and its causes.
pub fn explain_connection_error(url: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        chain.push_str(&e.to_string());
        chain.push_str(": ");
        cur = e.source();
    }
    let lower = chain.to_ascii_lowercase();
    if let Some(kube::Error::Api(status)) = err.downcast_ref::<kube::Error>()
        && status.code == 401
    {
        return format!(
            "the provider at {url} rejected the token (401 Unauthorized): it expired or its identity was revoked; run `liqoctl generate peer-command` on the provider again"
        );
    }
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("tls") {
        return format!(
            "TLS handshake with {url} failed: the API server's certificate is not signed by the CA in --ca-data ({}); copy --ca-data unchanged from the provider's peer command",
            chain.trim_end_matches(": ")
        );
    }
    format!(
        "cannot reach the provider's API server at {url} ({}): check --api-server-url and that the provider is reachable from here",
        chain.trim_end_matches(": ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"RS256"}"#),
            e.encode(claims)
        )
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_url("https://127.0.0.1:6443/").unwrap(),
            "https://127.0.0.1:6443"
        );
        assert!(check_url("http://127.0.0.1:6443").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url("https://h?x=1").is_err());
        let msg = check_url("nope").unwrap_err().to_string();
        assert!(msg.contains("--api-server-url"), "{msg}");
    }

    #[test]
    fn ca_round_trip_and_errors() {
        let pem = der_to_pem(&[vec![1, 2, 3], vec![4; 100]]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
        let (text, ders) = decode_ca(&b64).unwrap();
        assert_eq!(text, pem);
        assert_eq!(ders, vec![vec![1, 2, 3], vec![4; 100]]);
        assert!(matches!(decode_ca("%%%"), Err(InputError::CaBase64(_))));
        let not_pem = base64::engine::general_purpose::STANDARD.encode("hello");
        assert_eq!(decode_ca(&not_pem), Err(InputError::CaPem));
    }

    #[test]
    fn tokens() {
        assert_eq!(check_token("abc", 0), Err(InputError::TokenFormat));
        assert!(check_token(&jwt(r#"{"exp": 100}"#), 50).is_ok());
        let err = check_token(&jwt(r#"{"exp": 100}"#), 100).unwrap_err();
        assert!(err.to_string().contains("1970-01-01T00:01:40Z"), "{err}");
        assert!(err.to_string().contains("generate peer-command"));
    }

    #[test]
    fn names_and_ids() {
        assert!(check_name("newyork").is_ok());
        assert!(check_name("New York").is_err());
        assert!(check_name("-a").is_err());
        assert!(check_cluster_id("newyork").is_ok());
        assert!(check_cluster_id("").is_err());
        assert_eq!(peering_name("New York", "NewYork"), "newyork");
        assert_eq!(peering_name("newyork", "x"), "newyork");
        assert_eq!(peering_name("A B", "C_D"), "provider");
    }

    #[test]
    fn command_is_shell_safe() {
        let cmd = peer_command("newyork", "https://h:1", "pem", "ny", "a.b-c_d");
        assert!(cmd.starts_with("liqoctl peer out-of-band newyork --api-server-url https://h:1"));
        assert!(cmd.ends_with("--cluster-id ny --token a.b-c_d"));
        assert_eq!(shell_word("a b'c"), r"'a b'\''c'");
    }
}
