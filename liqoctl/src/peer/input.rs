//! Pure helpers of the peering commands: checking what the user typed (URL, CA, token, names),
//! rendering the peer command, and turning connection errors into one sentence. No I/O here, so
//! all of it is unit-tested.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine as _;
use liqo_gateway::Fingerprint;
use liqo_host::api::gateway::{
    GATEWAY_CONFIGMAP, GATEWAY_CONFIGMAP_ENDPOINT_KEY, GATEWAY_CONFIGMAP_FINGERPRINT_KEY,
};
use liqo_host::api::identity::{CLUSTER_IDENTITY_NAMESPACE, is_label_value};
use liqo_host::protocol::identity;
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
    /// One of `--gateway-fingerprint` and `--gateway-endpoint` without the other.
    #[error(
        "{given} was given without {missing}: pass both, as printed by `liqoctl generate peer-command`, or neither (the peering then uses address translation Identity)"
    )]
    GatewayPartner {
        /// The flag that was given.
        given: &'static str,
        /// The flag that is missing.
        missing: &'static str,
    },
    /// `--gateway-fingerprint` is not a SHA-256 fingerprint.
    #[error(
        "--gateway-fingerprint {0:?} is not a SHA-256 fingerprint (64 hex digits): copy it unchanged from the output of `liqoctl generate peer-command`"
    )]
    GatewayFingerprint(String),
    /// A `--gateway-endpoint` flag is not a usable `IP:PORT`.
    #[error(
        "--gateway-endpoint {value:?} is not a gateway endpoint ({reason}): pass IP:PORT where the provider's gateway accepts connections from inside the provider, for example 10.96.0.50:7901 or [fd00::5]:7901, as printed by `liqoctl generate peer-command`"
    )]
    GatewayEndpoint {
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// The provider's gateway, as the peer command carries it (`--gateway-fingerprint`,
/// `--gateway-endpoint`). Nothing in it is secret: it tells the consumer which certificate to
/// accept and where the provider's clients reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayFlags {
    /// SHA-256 fingerprint of the provider gateway's certificate.
    pub fingerprint: Fingerprint,
    /// `IP:PORT` inside the provider where its gateway accepts connections for reflected
    /// Services.
    pub endpoint: SocketAddr,
}

/// `value` as a gateway endpoint, or why it is refused: it must be an IP (never a host name:
/// reflected EndpointSlices carry addresses) of one host, and a port.
fn endpoint_problem(value: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = value.trim().parse().map_err(|_| {
        "not an IP address and a port; host names are not accepted, EndpointSlices carry IPs"
            .to_string()
    })?;
    if addr.port() == 0 {
        return Err("port 0".into());
    }
    if addr.ip().is_unspecified() || addr.ip().is_multicast() {
        return Err(format!("{} is not the address of one host", addr.ip()));
    }
    if let SocketAddr::V6(v6) = addr
        && v6.scope_id() != 0
    {
        return Err("an IPv6 zone index is not accepted".into());
    }
    Ok(addr)
}

/// Checks a `--gateway-endpoint` flag (of `peer out-of-band` or of `generate peer-command`).
pub fn check_gateway_endpoint(value: &str) -> Result<SocketAddr, InputError> {
    endpoint_problem(value).map_err(|reason| InputError::GatewayEndpoint {
        value: value.to_string(),
        reason,
    })
}

/// Checks `--gateway-fingerprint` and `--gateway-endpoint` of `peer out-of-band`: both or
/// neither. `None` when neither is given (the peering keeps address translation Identity).
pub fn check_gateway(
    fingerprint: Option<&str>,
    endpoint: Option<&str>,
) -> Result<Option<GatewayFlags>, InputError> {
    const FINGERPRINT: &str = "--gateway-fingerprint";
    const ENDPOINT: &str = "--gateway-endpoint";
    let (fingerprint, endpoint) = match (fingerprint, endpoint) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(InputError::GatewayPartner {
                given: FINGERPRINT,
                missing: ENDPOINT,
            });
        }
        (None, Some(_)) => {
            return Err(InputError::GatewayPartner {
                given: ENDPOINT,
                missing: FINGERPRINT,
            });
        }
        (Some(f), Some(e)) => (f, e),
    };
    let fingerprint: Fingerprint = fingerprint
        .parse()
        .map_err(|_| InputError::GatewayFingerprint(fingerprint.to_string()))?;
    let endpoint = check_gateway_endpoint(endpoint)?;
    Ok(Some(GatewayFlags {
        fingerprint,
        endpoint,
    }))
}

/// Why `generate peer-command` cannot announce this cluster's gateway.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnouncementError {
    /// `--gateway-endpoint` was given, but no gateway runs here.
    #[error(
        "--gateway-endpoint was given, but this cluster announces no gateway (ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_CONFIGMAP} not found; the host writes it while its gateway runs): start the gateway, or drop --gateway-endpoint to peer with address translation Identity"
    )]
    NoGateway,
    /// The ConfigMap's fingerprint is missing or malformed.
    #[error(
        "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_CONFIGMAP} has no valid {GATEWAY_CONFIGMAP_FINGERPRINT_KEY} ({0}): the host writes it from its gateway's certificate; check the host's log, or delete the ConfigMap to peer with address translation Identity"
    )]
    Fingerprint(String),
    /// The ConfigMap's endpoint is missing or malformed, and no `--gateway-endpoint` replaces it.
    #[error(
        "ConfigMap {CLUSTER_IDENTITY_NAMESPACE}/{GATEWAY_CONFIGMAP} has no valid {GATEWAY_CONFIGMAP_ENDPOINT_KEY} ({0}): pass --gateway-endpoint IP:PORT, where this cluster's gateway accepts connections from inside it"
    )]
    Endpoint(String),
}

/// What the peer command announces about this (provider) cluster's gateway: the `data` of the
/// ConfigMap the host publishes (`None` when absent: no gateway, nothing announced), with its
/// endpoint replaced by `endpoint_override` (`--gateway-endpoint`, already checked).
pub fn gateway_announcement(
    config_map: Option<&BTreeMap<String, String>>,
    endpoint_override: Option<SocketAddr>,
) -> Result<Option<GatewayFlags>, AnnouncementError> {
    let Some(data) = config_map else {
        return match endpoint_override {
            Some(_) => Err(AnnouncementError::NoGateway),
            None => Ok(None),
        };
    };
    let fingerprint = match data.get(GATEWAY_CONFIGMAP_FINGERPRINT_KEY) {
        None => return Err(AnnouncementError::Fingerprint("the key is missing".into())),
        Some(value) => value.parse::<Fingerprint>().map_err(|_| {
            AnnouncementError::Fingerprint(format!("{value:?} is not 64 hex digits"))
        })?,
    };
    let endpoint = match (endpoint_override, data.get(GATEWAY_CONFIGMAP_ENDPOINT_KEY)) {
        (Some(endpoint), _) => endpoint,
        (None, None) => return Err(AnnouncementError::Endpoint("the key is missing".into())),
        (None, Some(value)) => endpoint_problem(value)
            .map_err(|reason| AnnouncementError::Endpoint(format!("{value:?}: {reason}")))?,
    };
    Ok(Some(GatewayFlags {
        fingerprint,
        endpoint,
    }))
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
    let times = identity::token_times(token).ok_or(InputError::TokenFormat)?;
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

/// The peer command line printed by `liqoctl generate peer-command`, with the gateway flags
/// when this cluster announces a gateway. The token comes last.
pub fn peer_command(
    name: &str,
    url: &str,
    ca_pem: &str,
    cluster_id: &str,
    token: &str,
    gateway: Option<&GatewayFlags>,
) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut words: Vec<String> = [
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
    ]
    .iter()
    .map(|w| w.to_string())
    .collect();
    if let Some(gateway) = gateway {
        words.extend([
            "--gateway-fingerprint".to_string(),
            gateway.fingerprint.to_string(),
            "--gateway-endpoint".to_string(),
            gateway.endpoint.to_string(),
        ]);
    }
    words.extend(["--token".to_string(), token.to_string()]);
    words
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
        let cmd = peer_command("newyork", "https://h:1", "pem", "ny", "a.b-c_d", None);
        assert!(cmd.starts_with("liqoctl peer out-of-band newyork --api-server-url https://h:1"));
        assert!(cmd.ends_with("--cluster-id ny --token a.b-c_d"));
        assert!(!cmd.contains("--gateway"), "{cmd}");
        assert_eq!(shell_word("a b'c"), r"'a b'\''c'");
    }

    fn fingerprint() -> Fingerprint {
        "0123456789abcdef".repeat(4).parse().unwrap()
    }

    #[test]
    fn command_carries_the_gateway() {
        let v4 = GatewayFlags {
            fingerprint: fingerprint(),
            endpoint: "10.96.0.50:7901".parse().unwrap(),
        };
        let cmd = peer_command("newyork", "https://h:1", "pem", "ny", "tok", Some(&v4));
        assert!(
            cmd.ends_with(&format!(
                "--cluster-id ny --gateway-fingerprint {} --gateway-endpoint 10.96.0.50:7901 --token tok",
                "0123456789abcdef".repeat(4)
            )),
            "{cmd}"
        );
        // An IPv6 endpoint has brackets, which a shell would glob: quoted.
        let v6 = GatewayFlags {
            endpoint: "[fd00::5]:7901".parse().unwrap(),
            ..v4
        };
        let cmd = peer_command("newyork", "https://h:1", "pem", "ny", "tok", Some(&v6));
        assert!(
            cmd.contains("--gateway-endpoint '[fd00::5]:7901' "),
            "{cmd}"
        );
        // What the consumer parses back is what was announced.
        let words: Vec<&str> = cmd.split(' ').collect();
        let value = |flag: &str| {
            let i = words.iter().position(|w| *w == flag).unwrap();
            words[i + 1].trim_matches('\'')
        };
        assert_eq!(
            check_gateway(
                Some(value("--gateway-fingerprint")),
                Some(value("--gateway-endpoint"))
            ),
            Ok(Some(v6))
        );
    }

    #[test]
    fn gateway_flags_both_or_neither() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(check_gateway(None, None), Ok(None));
        let flags = check_gateway(Some(&hex), Some("10.96.0.50:7901"))
            .unwrap()
            .unwrap();
        assert_eq!(flags.fingerprint, fingerprint());
        assert_eq!(flags.endpoint, "10.96.0.50:7901".parse().unwrap());
        // The forms other tools print are accepted and normalized.
        let colons = fingerprint()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            check_gateway(Some(&format!("sha256:{colons}")), Some("10.0.0.1:1"))
                .unwrap()
                .unwrap()
                .fingerprint,
            fingerprint()
        );

        let err = check_gateway(Some(&hex), None).unwrap_err().to_string();
        assert!(
            err.starts_with("--gateway-fingerprint was given without --gateway-endpoint"),
            "{err}"
        );
        assert!(err.contains("pass both"), "{err}");
        let err = check_gateway(None, Some("10.0.0.1:1"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--gateway-endpoint was given without --gateway-fingerprint"),
            "{err}"
        );
    }

    #[test]
    fn gateway_fingerprints_must_be_sha256() {
        for bad in [
            "",
            "abcd",
            &"0".repeat(63),
            &"g".repeat(64),
            &"0".repeat(66),
        ] {
            let err = check_gateway(Some(bad), Some("10.0.0.1:1")).unwrap_err();
            assert_eq!(err, InputError::GatewayFingerprint(bad.to_string()));
            let msg = err.to_string();
            assert!(msg.contains("--gateway-fingerprint"), "{msg}");
            assert!(msg.contains("64 hex digits"), "{msg}");
            assert!(msg.contains("generate peer-command"), "{msg}");
        }
    }

    #[test]
    fn gateway_endpoints_must_be_one_host_and_port() {
        for good in ["10.96.0.50:7901", "[fd00::5]:7901", " 127.0.0.1:65535 "] {
            assert!(check_gateway_endpoint(good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("10.96.0.50", "not an IP address and a port"),
            ("gateway.liqo:7901", "host names are not accepted"),
            ("fd00::5:7901", "not an IP address and a port"),
            ("10.96.0.50:0", "port 0"),
            ("10.96.0.50:70000", "not an IP address and a port"),
            ("0.0.0.0:7901", "not the address of one host"),
            ("[::]:7901", "not the address of one host"),
            ("224.0.0.1:7901", "not the address of one host"),
            ("[fe80::1%2]:7901", "zone index"),
        ] {
            let msg = check_gateway_endpoint(bad).unwrap_err().to_string();
            assert!(msg.starts_with("--gateway-endpoint "), "{msg}");
            assert!(msg.contains(reason), "{bad}: {msg}");
            assert!(msg.contains("IP:PORT"), "{msg}");
        }
    }

    #[test]
    fn gateway_announcement_from_the_config_map() {
        let hex = "0123456789abcdef".repeat(4);
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let published = data(&[
            ("fingerprint", &hex),
            ("serviceEndpoint", "10.96.0.50:7901"),
        ]);
        // No ConfigMap: nothing announced, unless an endpoint was asked for.
        assert_eq!(gateway_announcement(None, None), Ok(None));
        let over: SocketAddr = "192.168.1.10:31901".parse().unwrap();
        let err = gateway_announcement(None, Some(over)).unwrap_err();
        assert_eq!(err, AnnouncementError::NoGateway);
        assert!(err.to_string().contains("liqo/liqo-gateway"), "{err}");
        // As published, or with the endpoint replaced.
        let flags = gateway_announcement(Some(&published), None)
            .unwrap()
            .unwrap();
        assert_eq!(flags.fingerprint, fingerprint());
        assert_eq!(flags.endpoint, "10.96.0.50:7901".parse().unwrap());
        let flags = gateway_announcement(Some(&published), Some(over))
            .unwrap()
            .unwrap();
        assert_eq!(flags.endpoint, over);
        // A bad published endpoint is replaced by the flag, else refused with the fix.
        let bad_endpoint = data(&[("fingerprint", &hex), ("serviceEndpoint", "pending")]);
        assert_eq!(
            gateway_announcement(Some(&bad_endpoint), Some(over))
                .unwrap()
                .unwrap()
                .endpoint,
            over
        );
        let err = gateway_announcement(Some(&bad_endpoint), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("serviceEndpoint"), "{err}");
        assert!(err.contains("--gateway-endpoint"), "{err}");
        let err = gateway_announcement(Some(&data(&[("fingerprint", &hex)])), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("the key is missing"), "{err}");
        // The fingerprint cannot be replaced: without it nothing is announced.
        for broken in [
            data(&[("serviceEndpoint", "10.96.0.50:7901")]),
            data(&[
                ("fingerprint", "xyz"),
                ("serviceEndpoint", "10.96.0.50:7901"),
            ]),
        ] {
            let err = gateway_announcement(Some(&broken), Some(over)).unwrap_err();
            assert!(matches!(err, AnnouncementError::Fingerprint(_)), "{err}");
            assert!(err.to_string().contains("fingerprint"), "{err}");
        }
    }
}
