//! The benchmark's wire protocol and its two ends.
//!
//! Per connection, repeated until the client closes it: the client sends an 8-byte big-endian
//! length N, the server answers exactly N bytes. The answer is a fixed pattern (byte `i` of
//! every answer is `i % 251`), so the client can check content as well as length: a gateway
//! that dropped, duplicated or reordered bytes would fail the check, not just a short read.
//! 251 is prime and does not divide the chunk size, so a chunk shifted by a whole chunk does
//! not match by accident.
//!
//! The server is tokio (it runs as the pod process and must serve the readiness probe and
//! several clients at once); the client is plain blocking `std::net`, one connection at a
//! time, so that a latency sample is the network path plus two syscalls, not a runtime's
//! scheduling.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest write of the server and largest read of the client: streams large answers
/// without allocating them.
pub const CHUNK: usize = 64 * 1024;

/// Period of the answer pattern.
const PERIOD: usize = 251;

/// How long the client waits for a connection or for the next bytes before giving up: a
/// stalled path is an error, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// `CHUNK + PERIOD` bytes of the pattern: any chunk of an answer, at any offset, is a slice
/// of it.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| (0..CHUNK + PERIOD).map(|i| (i % PERIOD) as u8).collect())
}

/// The `len` answer bytes starting at answer offset `offset` (`len <= CHUNK`).
fn expected(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % PERIOD as u64) as usize;
    &pattern()[start..start + len]
}

/// Serves the protocol on `listener` until the process ends. One task per connection; a
/// failing connection is logged and does not stop the server.
pub async fn serve(listener: tokio::net::TcpListener) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: transient for a server; back off
                // instead of spinning or exiting (the pod would restart and lose clients).
                eprintln!("liqo-bench-transport serve: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = answer(stream).await {
                eprintln!("liqo-bench-transport serve: connection from {peer}: {e}");
            }
        });
    }
}

/// Answers requests on one connection until the client closes it.
async fn answer(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    // Small answers must leave at once, not wait for Nagle's timer.
    stream.set_nodelay(true)?;
    let mut header = [0u8; 8];
    loop {
        match stream.read_exact(&mut header).await {
            Ok(_) => {}
            // The client is done (the readiness probe connects and closes without a request).
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let total = u64::from_be_bytes(header);
        let mut sent = 0u64;
        while sent < total {
            let len = (total - sent).min(CHUNK as u64) as usize;
            stream.write_all(expected(sent, len)).await?;
            sent += len as u64;
        }
    }
}

/// Connects to `addr` with the client's timeouts and `TCP_NODELAY`.
pub fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .context("read timeout")?;
    stream
        .set_write_timeout(Some(IO_TIMEOUT))
        .context("write timeout")?;
    Ok(stream)
}

/// Sends one request for `size` bytes on `stream` and reads the whole answer, checking its
/// length and content. `buf` is scratch space of at least [`CHUNK`] bytes.
///
/// # Errors
/// If the connection fails, the answer ends early ("truncated") or a byte differs from the
/// pattern ("corrupt").
pub fn request(stream: &mut TcpStream, size: u64, buf: &mut [u8]) -> Result<()> {
    stream
        .write_all(&size.to_be_bytes())
        .context("sending the request")?;
    let mut got = 0u64;
    while got < size {
        let want = (size - got).min(CHUNK as u64) as usize;
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => bail!("truncated answer: {got} of {size} bytes, then the connection closed"),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading the answer ({got} of {size} bytes)"));
            }
        };
        if buf[..n] != *expected(got, n) {
            let at = buf[..n]
                .iter()
                .zip(expected(got, n))
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            bail!(
                "corrupt answer: byte {} differs from the pattern",
                got + at as u64
            );
        }
        got += n as u64;
    }
    Ok(())
}

/// Latency percentiles of request/response round trips, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SmallResult {
    /// Always `"small"`.
    pub mode: String,
    /// Whether every request had its own TCP connection (connect time included).
    pub new_connection: bool,
    /// Answer size of each request, bytes.
    pub size: u64,
    /// Requests measured.
    pub count: usize,
    /// Median round trip.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Slowest.
    pub max_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

/// One large answer: its size and how fast it came.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BulkResult {
    /// Always `"bulk"`.
    pub mode: String,
    /// Bytes received (equal to the bytes asked for, or the client failed).
    pub bytes: u64,
    /// From sending the request to the last byte.
    pub seconds: f64,
    /// `bytes / seconds`, in MiB/s.
    pub mib_per_s: f64,
}

/// The nearest-rank percentile `p` (0–100) of an ascending, non-empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `requests` round trips of `size` bytes to `addr`: on one kept connection, or with
/// `new_connection` on a fresh connection each (connect included in the time, close not).
pub fn small(
    addr: SocketAddr,
    requests: usize,
    size: u64,
    new_connection: bool,
) -> Result<SmallResult> {
    if requests == 0 {
        bail!("--requests must be at least 1");
    }
    let mut buf = vec![0u8; CHUNK];
    let mut samples = Vec::with_capacity(requests);
    let mut kept = if new_connection {
        None
    } else {
        Some(connect(addr)?)
    };
    for i in 0..requests {
        let started = Instant::now();
        let result = match kept.as_mut() {
            Some(stream) => request(stream, size, &mut buf),
            None => connect(addr).and_then(|mut stream| request(&mut stream, size, &mut buf)),
        };
        result.with_context(|| format!("request {} of {requests} to {addr}", i + 1))?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(SmallResult {
        mode: "small".into(),
        new_connection,
        size,
        count: samples.len(),
        p50_us: percentile(&samples, 50.0),
        p90_us: percentile(&samples, 90.0),
        p99_us: percentile(&samples, 99.0),
        max_us: samples[samples.len() - 1],
        mean_us: samples.iter().sum::<f64>() / samples.len() as f64,
    })
}

/// One request of `size` bytes to `addr` on a fresh connection (connect not timed).
pub fn bulk(addr: SocketAddr, size: u64) -> Result<BulkResult> {
    let mut stream = connect(addr)?;
    let mut buf = vec![0u8; CHUNK];
    let started = Instant::now();
    request(&mut stream, size, &mut buf).with_context(|| format!("{size} bytes from {addr}"))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(BulkResult {
        mode: "bulk".into(),
        bytes: size,
        seconds,
        mib_per_s: size as f64 / (1024.0 * 1024.0) / seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a loopback port, in a runtime of its own thread.
    fn loopback_server() -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                serve(listener).await
            })
        });
        rx.recv().unwrap()
    }

    /// A server that answers the first request with `send` bytes of the pattern, or with
    /// `send` bytes of zeros if `corrupt`, then closes.
    fn misbehaving_server(send: usize, corrupt: bool) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut header = [0u8; 8];
            s.read_exact(&mut header).unwrap();
            let body: Vec<u8> = if corrupt {
                vec![0; send]
            } else {
                (0..send).map(|i| (i % PERIOD) as u8).collect()
            };
            let _ = s.write_all(&body);
        });
        addr
    }

    #[test]
    fn answers_exactly_the_requested_bytes_on_a_kept_connection() {
        let addr = loopback_server();
        let mut stream = connect(addr).unwrap();
        let mut buf = vec![0u8; CHUNK];
        // Larger than a chunk and not a multiple of it nor of the period; then a small one on
        // the same connection: the first answer must not leak into the second.
        request(&mut stream, 3 * CHUNK as u64 + 17, &mut buf).unwrap();
        stream.write_all(&64u64.to_be_bytes()).unwrap();
        let mut answer = vec![0u8; 64];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(answer, (0..64u8).collect::<Vec<_>>());
        // Nothing more than asked for.
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let extra = stream.read(&mut buf);
        assert!(
            matches!(&extra, Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut),
            "unexpected extra bytes: {extra:?}"
        );
    }

    #[test]
    fn small_reports_one_sample_per_request_in_order() {
        let addr = loopback_server();
        for new_connection in [false, true] {
            let r = small(addr, 50, 64, new_connection).unwrap();
            assert_eq!(r.count, 50);
            assert_eq!(r.new_connection, new_connection);
            assert!(
                0.0 < r.p50_us
                    && r.p50_us <= r.p90_us
                    && r.p90_us <= r.p99_us
                    && r.p99_us <= r.max_us,
                "{r:?}"
            );
        }
    }

    #[test]
    fn bulk_counts_every_byte() {
        let addr = loopback_server();
        let r = bulk(addr, 5 * 1024 * 1024).unwrap();
        assert_eq!(r.bytes, 5 * 1024 * 1024);
        assert!(r.seconds > 0.0 && r.mib_per_s > 0.0, "{r:?}");
    }

    #[test]
    fn a_truncated_answer_is_an_error() {
        let addr = misbehaving_server(1000, false);
        let err = bulk(addr, 4096).unwrap_err();
        assert!(
            format!("{err:#}").contains("truncated answer: 1000 of 4096 bytes"),
            "{err:#}"
        );
    }

    #[test]
    fn a_corrupt_answer_is_an_error() {
        let addr = misbehaving_server(64, true);
        let err = small(addr, 1, 64, false).unwrap_err();
        assert!(
            format!("{err:#}").contains("corrupt answer: byte 1 "),
            "{err:#}"
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
    }
}
