//! Mutual TLS 1.3 with pinned certificates.
//!
//! Gateways do not use a CA. The dialing side accepts exactly the certificate whose fingerprint
//! was pinned for the peer it dials ([`PinnedServerVerifier`]); the accepting side accepts any
//! certificate whose fingerprint is pinned for one of its peers ([`PinnedClientVerifier`]) and
//! learns from it which peer connected. Anything else fails the handshake with an error naming
//! the peer and both fingerprints, so a mis-pasted fingerprint is obvious in the logs.
//!
//! Handshake signatures are still verified (with ring), so presenting a pinned certificate
//! without its key fails. Validity dates and names are not checked: the pin is the trust.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use crate::identity::{Fingerprint, Identity};

/// ALPN protocol both sides announce: the link speaks HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Why the peer's certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The dialed peer presented a certificate other than the one pinned for it.
    #[error(
        "certificate of peer {peer:?} has fingerprint {presented}, but {pinned} is pinned for it: refusing the link"
    )]
    ServerMismatch {
        /// The peer that was dialed.
        peer: String,
        /// The fingerprint pinned for it.
        pinned: Fingerprint,
        /// The fingerprint of the certificate it presented.
        presented: Fingerprint,
    },
    /// A connecting gateway presented a certificate pinned for no peer.
    #[error(
        "client certificate with fingerprint {presented} is pinned for no peer (pinned peers: {known}): refusing the link"
    )]
    UnknownClient {
        /// The fingerprint of the certificate it presented.
        presented: Fingerprint,
        /// The names of the peers that are pinned, comma-separated.
        known: String,
    },
}

/// Errors building a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[error("building the TLS configuration: {0}")]
pub struct TlsConfigError(#[from] rustls::Error);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn refuse(e: PinError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Accepts exactly one server certificate: the one pinned for `peer`.
#[derive(Debug)]
pub struct PinnedServerVerifier {
    peer: String,
    pinned: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedServerVerifier {
    /// A verifier for dialing `peer`, whose certificate has fingerprint `pinned`.
    pub fn new(peer: impl Into<String>, pinned: Fingerprint) -> Self {
        PinnedServerVerifier {
            peer: peer.into(),
            pinned,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity);
        if presented == self.pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(refuse(PinError::ServerMismatch {
                peer: self.peer.clone(),
                pinned: self.pinned,
                presented,
            }))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The peers an accepting gateway trusts: fingerprint → peer name. Shared with the running
/// server so peers can be added and removed without restarting the listener.
#[derive(Debug, Clone, Default)]
pub struct PinSet(Arc<RwLock<HashMap<Fingerprint, String>>>);

impl PinSet {
    /// Replaces the pinned peers.
    pub fn replace(&self, pins: HashMap<Fingerprint, String>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = pins;
    }

    /// The peer `fingerprint` is pinned for, if any.
    pub fn peer_of(&self, fingerprint: &Fingerprint) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(fingerprint)
            .cloned()
    }

    fn known(&self) -> String {
        let pins = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<&str> = pins.values().map(String::as_str).collect();
        names.sort_unstable();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// Accepts a client certificate only if it is pinned for one of the peers in a [`PinSet`].
#[derive(Debug)]
pub struct PinnedClientVerifier {
    pins: PinSet,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientVerifier {
    /// A verifier that consults `pins` at every handshake.
    pub fn new(pins: PinSet) -> Self {
        PinnedClientVerifier {
            pins,
            algorithms: provider().signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let presented = Fingerprint::of_der(end_entity);
        if self.pins.peer_of(&presented).is_some() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(refuse(PinError::UnknownClient {
                presented,
                known: self.pins.known(),
            }))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// TLS 1.3 client configuration for dialing `peer` (pinned at `pinned`) as `identity`.
pub fn client_config(
    identity: &Identity,
    peer: &str,
    pinned: Fingerprint,
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier::new(peer, pinned)))
        .with_client_auth_cert(vec![identity.cert_der().clone()], identity.key_der())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}

/// TLS 1.3 server configuration for accepting the peers in `pins` as `identity`.
pub fn server_config(
    identity: &Identity,
    pins: PinSet,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PinnedClientVerifier::new(pins)))
        .with_single_cert(vec![identity.cert_der().clone()], identity.key_der())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(config)
}
