//! The destination a client dialed before DNAT.
//!
//! kube-proxy (iptables, nftables or IPVS) rewrites the destination of a connection to a
//! Service's ClusterIP or nodePort into one of its endpoints. When that endpoint is the gateway's
//! service listener, the only trace of which Service the client meant is the connection's
//! conntrack entry, which Linux exposes as the `SO_ORIGINAL_DST` socket option (`SOL_IP`) and,
//! for IPv6, `IP6T_SO_ORIGINAL_DST` (`SOL_IPV6`).

use std::io;
use std::net::{SocketAddr, SocketAddrV4};

use tokio::net::TcpStream;

/// The destination a client dialed before DNAT (`SO_ORIGINAL_DST`); for a connection that was
/// not NATed this is the socket's local address. Linux only (elsewhere: the local address).
///
/// An IPv4 address is returned as [`SocketAddr::V4`] even when `stream` was accepted by a
/// dual-stack IPv6 listener (where the socket sees it as `::ffff:a.b.c.d`), so resolvers can be
/// keyed by the ClusterIP as Kubernetes writes it.
pub fn original_destination(stream: &TcpStream) -> io::Result<SocketAddr> {
    let local = unmap(stream.local_addr()?);
    #[cfg(target_os = "linux")]
    if let Some(original) = linux::original_dst(stream, local)? {
        return Ok(unmap(original));
    }
    Ok(local)
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::net::SocketAddr;

    use tokio::net::TcpStream;

    /// The conntrack entry's original destination, or `None` when there is none to read (then
    /// no NAT can have happened to the connection). `local` is the socket's (unmapped) local
    /// address: its family is the family of the connection, hence of the conntrack entry.
    pub(super) fn original_dst(
        stream: &TcpStream,
        local: SocketAddr,
    ) -> io::Result<Option<SocketAddr>> {
        let socket = socket2::SockRef::from(stream);
        // socket2 wraps the getsockopt calls (and their unsafe) for us. An IPv4 connection on an
        // IPv6 socket is tracked as IPv4, and the kernel answers SOL_IP on such sockets.
        let result = match local {
            SocketAddr::V4(_) => socket.original_dst_v4(),
            SocketAddr::V6(_) => socket.original_dst_v6(),
        };
        match result {
            Ok(addr) => addr
                .as_socket()
                .map(Some)
                .ok_or_else(|| io::Error::other("the original destination is not an IP address")),
            // ENOENT: conntrack tracks no such connection (no NAT rule ever matched it in this
            // network namespace); ENOPROTOOPT: conntrack is not loaded at all.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOPROTOOPT)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn accepted(listen: &str, dial: &str) -> Option<(TcpStream, SocketAddr)> {
        // Skip only IPv6 on a machine without it; an IPv4 failure is a test failure.
        let listener = match TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(e) if listen.starts_with('[') => {
                eprintln!("cannot bind {listen} ({e}): no IPv6 here, nothing to check");
                return None;
            }
            Err(e) => panic!("binding {listen}: {e}"),
        };
        let port = listener.local_addr().unwrap().port();
        let dial: SocketAddr = format!("{dial}:{port}").parse().unwrap();
        let _client = TcpStream::connect(dial).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        Some((server, dial))
    }

    #[tokio::test]
    async fn without_nat_it_is_the_local_address() {
        let (server, dialed) = accepted("127.0.0.1:0", "127.0.0.1").await.unwrap();
        assert_eq!(original_destination(&server).unwrap(), dialed);
        assert_eq!(dialed, server.local_addr().unwrap());
    }

    #[tokio::test]
    async fn ipv6_without_nat_it_is_the_local_address() {
        let Some((server, dialed)) = accepted("[::1]:0", "[::1]").await else {
            return;
        };
        assert_eq!(original_destination(&server).unwrap(), dialed);
    }

    #[tokio::test]
    async fn ipv4_on_a_dual_stack_listener_is_reported_as_ipv4() {
        let Some((server, dialed)) = accepted("[::]:0", "127.0.0.1").await else {
            return;
        };
        // The socket sees the mapped form; resolvers must get the plain IPv4 address.
        assert!(server.local_addr().unwrap().is_ipv6());
        assert_eq!(original_destination(&server).unwrap(), dialed);
    }

    #[test]
    fn unmap_only_touches_mapped_addresses() {
        let mapped: SocketAddr = "[::ffff:10.96.0.12]:80".parse().unwrap();
        assert_eq!(
            unmap(mapped),
            "10.96.0.12:80".parse::<SocketAddr>().unwrap()
        );
        for plain in ["[fd00::1]:80", "10.0.0.1:443", "[::1]:1"] {
            let addr: SocketAddr = plain.parse().unwrap();
            assert_eq!(unmap(addr), addr);
        }
    }
}
