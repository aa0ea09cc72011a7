//! A gateway's TLS identity and the fingerprints peers pin it by.
//!
//! Each cluster's gateway has one self-signed certificate. Nothing chains to a CA: at peering
//! time each side learns the other's [`Fingerprint`] (SHA-256 of the certificate's DER) and the
//! link accepts exactly that certificate (see [`crate::tls`]). Rotating a certificate therefore
//! means exchanging the new fingerprint, which is what re-peering does.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// File name of the certificate inside an identity directory ([`Identity::write_dir`]).
pub const CERT_FILE: &str = "tls.crt";
/// File name of the private key inside an identity directory ([`Identity::write_dir`]).
pub const KEY_FILE: &str = "tls.key";

/// Why an identity could not be generated, read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The cluster name is not a DNS-1123 label (it becomes the certificate's DNS name).
    #[error(
        "invalid cluster name {0:?}: must be a DNS-1123 label (lowercase letters, digits, '-')"
    )]
    InvalidClusterName(String),
    /// rcgen could not generate the key or the certificate.
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificate or key PEM could not be parsed.
    #[error("parsing {what}: {source}")]
    Pem {
        /// Which PEM ("certificate" or "private key").
        what: &'static str,
        /// The parser's error.
        source: rustls::pki_types::pem::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A SHA-256 fingerprint of a certificate's DER encoding: what peers pin.
///
/// Displayed and parsed as 64 lowercase hex digits; parsing also accepts upper case, colons
/// between bytes and a `sha256:` prefix, the forms other tools print.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A string that is not a SHA-256 fingerprint.
#[derive(Debug, thiserror::Error)]
#[error("invalid SHA-256 fingerprint {0:?}: expected 64 hex digits")]
pub struct InvalidFingerprint(String);

impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let trimmed = trimmed.strip_prefix("sha256:").unwrap_or(trimmed);
        let digits: String = trimmed.chars().filter(|c| *c != ':').collect();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(digits.to_ascii_lowercase(), &mut bytes)
            .map_err(|_| InvalidFingerprint(s.to_string()))?;
        Ok(Fingerprint(bytes))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A gateway's certificate and private key, with the certificate's fingerprint.
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl fmt::Debug for Identity {
    // Never print the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Generates a new ECDSA P-256 key and a self-signed certificate for `cluster_name`
    /// (subject CN and DNS name). The name only helps humans reading the certificate: peers
    /// trust it by fingerprint, never by name.
    pub fn generate(cluster_name: &str) -> Result<Self, IdentityError> {
        if !is_dns_label(cluster_name) {
            return Err(IdentityError::InvalidClusterName(cluster_name.to_string()));
        }
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec![cluster_name.to_string()])?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cluster_name);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "liqo-gateway");
        let cert = params.self_signed(&key)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// An identity from a PEM certificate (the first one in `cert_pem`) and PEM private key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|source| {
            IdentityError::Pem {
                what: "certificate",
                source,
            }
        })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| {
            IdentityError::Pem {
                what: "private key",
                source,
            }
        })?;
        Ok(Identity {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            fingerprint: Fingerprint::of_der(&cert),
            cert,
            key,
        })
    }

    /// Reads an identity from a certificate file and a key file (PEM).
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, IdentityError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| IdentityError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_pem(&read(cert_file)?, &read(key_file)?)
    }

    /// Writes [`CERT_FILE`] and [`KEY_FILE`] into `dir` (created if missing); the key file is
    /// readable by its owner only.
    pub fn write_dir(&self, dir: &Path) -> Result<(), IdentityError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let cert_path = dir.join(CERT_FILE);
        std::fs::write(&cert_path, &self.cert_pem).map_err(io(&cert_path))?;
        let key_path = dir.join(KEY_FILE);
        write_private(&key_path, self.key_pem.as_bytes()).map_err(io(&key_path))?;
        Ok(())
    }

    /// The certificate, PEM-encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key, PEM-encoded.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate, DER-encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The private key, DER-encoded.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// What peers pin: the SHA-256 fingerprint of the certificate.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// Whether `s` is a DNS-1123 label, the form of Kubernetes namespace, Service and cluster names.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_round_trips_through_pem() {
        let id = Identity::generate("london").unwrap();
        let again = Identity::from_pem(id.cert_pem(), id.key_pem()).unwrap();
        assert_eq!(id.fingerprint(), again.fingerprint());
        assert_ne!(
            id.fingerprint(),
            Identity::generate("london").unwrap().fingerprint()
        );
    }

    #[test]
    fn fingerprint_parses_common_forms() {
        let fp = Identity::generate("newyork").unwrap().fingerprint();
        let plain = fp.to_string();
        assert_eq!(plain.len(), 64);
        let colons = fp
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(plain.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(colons.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            format!("sha256:{plain}").parse::<Fingerprint>().unwrap(),
            fp
        );
        assert!("abcd".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn cluster_name_must_be_a_dns_label() {
        assert!(matches!(
            Identity::generate("New York"),
            Err(IdentityError::InvalidClusterName(_))
        ));
    }
}
