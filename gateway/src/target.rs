//! What a stream asks for: a Service port, named as (namespace, service, port), never an address.
//!
//! On the wire the target is the `:authority` of the HTTP/2 CONNECT request,
//! `SERVICE.NAMESPACE:PORT`: both names are DNS-1123 labels, so the form is unambiguous, and it
//! is the name the Service has in cluster DNS (minus `.svc.cluster.local`), readable in traces.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::identity::is_dns_label;

/// A Service port in the exporting cluster.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Target {
    /// Namespace of the Service.
    pub namespace: String,
    /// Name of the Service.
    pub service: String,
    /// Port of the Service.
    pub port: u16,
}

/// A string that does not name a target.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "invalid target {0:?}: expected SERVICE.NAMESPACE:PORT with DNS-1123 labels and a port 1-65535"
)]
pub struct InvalidTarget(pub String);

impl Target {
    /// A target; fails unless both names are DNS-1123 labels and the port is not 0.
    pub fn new(
        namespace: impl Into<String>,
        service: impl Into<String>,
        port: u16,
    ) -> Result<Self, InvalidTarget> {
        let target = Target {
            namespace: namespace.into(),
            service: service.into(),
            port,
        };
        target.validate()?;
        Ok(target)
    }

    /// Checks the names and port (for targets built from deserialized fields).
    pub fn validate(&self) -> Result<(), InvalidTarget> {
        if is_dns_label(&self.namespace) && is_dns_label(&self.service) && self.port != 0 {
            Ok(())
        } else {
            Err(InvalidTarget(format!(
                "{}/{}:{}",
                self.namespace, self.service, self.port
            )))
        }
    }

    /// The CONNECT `:authority` naming this target: `SERVICE.NAMESPACE:PORT`.
    pub fn authority(&self) -> String {
        format!("{}.{}:{}", self.service, self.namespace, self.port)
    }

    /// `NAMESPACE/SERVICE`, the value of the `service` metric label.
    pub fn service_label(&self) -> String {
        format!("{}/{}", self.namespace, self.service)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

impl FromStr for Target {
    type Err = InvalidTarget;

    /// Parses an authority, `SERVICE.NAMESPACE:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidTarget(s.to_string());
        let (host, port) = s.rsplit_once(':').ok_or_else(invalid)?;
        let (service, namespace) = host.split_once('.').ok_or_else(invalid)?;
        let port: u16 = port.parse().map_err(|_| invalid())?;
        Target::new(namespace, service, port).map_err(|_| invalid())
    }
}

/// Export side: which targets a peer may reach and the local address each is served at (in a
/// cluster, the Service's ClusterIP and port). A target missing here is refused: a peer can
/// never make the gateway connect to an arbitrary address.
pub type ExportTable = HashMap<Target, SocketAddr>;

/// Import side: one local listener forwarding every accepted connection to a peer's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRule {
    /// Address to listen on (port 0 picks a free port, reported by
    /// [`crate::Gateway::set_imports`]).
    pub listen: SocketAddr,
    /// The peer whose gateway serves the target.
    pub peer: String,
    /// The target in the peer's cluster.
    pub target: Target,
}

/// Where a connection accepted on the service listener goes (see
/// [`crate::Gateway::listen_services`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRoute {
    /// The peer whose gateway serves the target.
    pub peer: String,
    /// The target in the peer's cluster.
    pub target: Target,
}

/// Maps the original destination of a connection (the ClusterIP:port or NodeIP:nodePort the
/// client dialed before NAT) to a route. Called once per accepted connection; must be cheap and
/// must not block.
///
/// IPv4 destinations are always given as [`SocketAddr::V4`], also when the service listener is
/// a dual-stack IPv6 socket (see [`crate::original_destination`]).
pub trait ServiceResolver: Send + Sync + 'static {
    /// The route for connections to `original_destination`; `None` resets the connection.
    fn resolve(&self, original_destination: SocketAddr) -> Option<ServiceRoute>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_round_trips() {
        let t = Target::new("liqo-demo", "flights-service", 7999).unwrap();
        assert_eq!(t.authority(), "flights-service.liqo-demo:7999");
        assert_eq!(t.authority().parse::<Target>().unwrap(), t);
    }

    #[test]
    fn addresses_are_not_targets() {
        for bad in [
            "10.0.0.1:80",
            "example.com.evil:80",
            "svc.ns:0",
            "svc.ns",
            "Svc.ns:80",
            "svc.ns:99999",
            "[::1]:80",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad} parsed");
        }
    }
}
