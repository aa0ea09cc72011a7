//! Copies bytes between a local TCP connection and an HTTP/2 stream, both ways.
//!
//! A clean end in one direction (local EOF, or the peer's END_STREAM) is forwarded as a
//! half-close (END_STREAM, or `shutdown(Write)` on the socket), so a client that stops sending
//! still gets the whole response. Any error (local read/write failure, the peer resetting the
//! stream, the link breaking) ends the stream with a reset on both sides: RST_STREAM towards the
//! peer and a TCP RST (SO_LINGER 0) towards the local socket. The local application therefore
//! never takes a truncated transfer for a complete one.

use std::future::poll_fn;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Smallest read buffer: what an idle or interactive stream holds while it waits.
const MIN_CHUNK: usize = 16 * 1024;
/// Largest read buffer, reached by streams whose reads keep filling it (bulk transfers): fewer,
/// larger DATA frames and wakeups per byte.
const MAX_CHUNK: usize = 256 * 1024;

/// How a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum SpliceError {
    /// Reading from or writing to the local socket failed.
    #[error("local connection: {0}")]
    Local(#[source] std::io::Error),
    /// The HTTP/2 stream or the link failed (reset by the peer, link closed, ...).
    #[error("link stream: {0}")]
    Peer(#[from] h2::Error),
    /// The peer stopped accepting data on the stream without an error code.
    #[error("link stream closed by the peer while sending")]
    Closed,
}

/// Byte counters of one stream: towards the peer and from the peer.
pub(crate) struct Counters {
    pub sent: Counter,
    pub received: Counter,
}

/// Closes `tcp` with a reset (SO_LINGER 0), so the other end sees ECONNRESET rather than EOF.
pub(crate) fn abort(tcp: TcpStream) {
    // Linger 0 never blocks on close (it discards the send queue), which is what we want here.
    if let Err(e) = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "setting SO_LINGER 0 failed; the socket closes with FIN");
    }
    drop(tcp);
}

/// Forwards between `tcp` and the stream until both directions ended cleanly (then `Ok`) or
/// one failed (then both sides are reset and the error returned).
pub(crate) async fn splice(
    mut tcp: TcpStream,
    mut send: SendStream<Bytes>,
    mut recv: RecvStream,
    counters: Counters,
) -> Result<(), SpliceError> {
    let result = {
        let (mut rd, mut wr) = tcp.split();
        let send = &mut send;
        let upstream = async {
            let mut buf = BytesMut::new();
            let mut want = MIN_CHUNK;
            loop {
                buf.reserve(want);
                // Watch for a reset while waiting on the local side: an idle client must still
                // learn promptly that its stream is gone.
                let n = tokio::select! {
                    read = rd.read_buf(&mut buf) => read.map_err(SpliceError::Local)?,
                    reset = poll_fn(|cx| send.poll_reset(cx)) => {
                        return Err(match reset {
                            Ok(reason) => SpliceError::Peer(h2::Error::from(reason)),
                            Err(e) => SpliceError::Peer(e),
                        });
                    }
                };
                if n == 0 {
                    send.send_data(Bytes::new(), true)?;
                    return Ok::<(), SpliceError>(());
                }
                counters.sent.inc_by(n as u64);
                want = if n >= want {
                    (want * 2).min(MAX_CHUNK)
                } else if n < want / 4 {
                    (want / 2).max(MIN_CHUNK)
                } else {
                    want
                };
                let mut chunk = buf.split().freeze();
                while !chunk.is_empty() {
                    // Respect HTTP/2 flow control: queue only what the peer granted, so a slow
                    // receiver slows the local reader instead of growing our buffers.
                    send.reserve_capacity(chunk.len());
                    let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
                        Some(granted) => granted?,
                        None => return Err(SpliceError::Closed),
                    };
                    if granted == 0 {
                        continue;
                    }
                    let part = chunk.split_to(granted.min(chunk.len()));
                    send.send_data(part, false)?;
                }
            }
        };
        let downstream = async {
            while let Some(data) = recv.data().await {
                let data = data?;
                wr.write_all(&data).await.map_err(SpliceError::Local)?;
                counters.received.inc_by(data.len() as u64);
                // Only now, once the bytes are in the socket, grant the peer more window.
                let _ = recv.flow_control().release_capacity(data.len());
            }
            wr.shutdown().await.map_err(SpliceError::Local)?;
            Ok::<(), SpliceError>(())
        };
        tokio::try_join!(upstream, downstream).map(|_| ())
    };
    if let Err(e) = &result {
        send.send_reset(h2::Reason::CANCEL);
        tracing::debug!(error = %e, "stream failed: resetting both sides");
        abort(tcp);
    }
    result
}
