//! Export side of the streams: the export tables, and one peer's stream served only to a
//! target exported to that peer (refused with a status and a reason otherwise).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use h2::RecvStream;
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::stream::run_stream;
use super::{Gateway, Inner, REASON_HEADER};
use crate::pump::abort;
use crate::target::{ExportTable, Target};

impl Gateway {
    /// Atomically replaces the per-peer export tables: a target in `exports[peer]` can be
    /// reached by `peer` only (a host exports to each provider the Services offloaded to it,
    /// under that provider's names). Streams already open are not affected.
    pub fn set_peer_exports(&self, exports: HashMap<String, ExportTable>) {
        *self
            .inner
            .peer_exports
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(exports);
    }

    /// Atomically replaces the export table shared by every peer. Streams already open are not
    /// affected.
    pub fn set_exports(&self, exports: ExportTable) {
        *self
            .inner
            .exports
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(exports);
    }
}

fn refusal(status: StatusCode, reason: &str) -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(reason) {
        response.headers_mut().insert(REASON_HEADER, value);
    }
    response
}

fn refuse_stream(mut respond: SendResponse<Bytes>, status: StatusCode, reason: String) {
    if let Ok(mut body) = respond.send_response(refusal(status, &reason), false) {
        let _ = body.send_data(Bytes::from(reason), true);
    }
}

/// Export side: one stream from `peer`, to a target that must be in the export table.
pub(super) async fn serve_export(
    inner: &Inner,
    peer: &str,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
) {
    let metrics = &inner.metrics;
    if request.method() != Method::CONNECT {
        metrics.refused(peer, "export", "bad_request");
        return refuse_stream(
            respond,
            StatusCode::METHOD_NOT_ALLOWED,
            "only CONNECT is supported".into(),
        );
    }
    let authority = request.uri().authority().map(|a| a.as_str()).unwrap_or("");
    let target: Target = match authority.parse() {
        Ok(target) => target,
        Err(e) => {
            metrics.refused(peer, "export", "bad_target");
            return refuse_stream(respond, StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let Some(addr) = exported_address(inner, peer, &target) else {
        metrics.refused(peer, "export", "not_exported");
        tracing::info!(%peer, %target, "refused a stream: target not exported");
        return refuse_stream(
            respond,
            StatusCode::NOT_FOUND,
            format!("{target} is not exported to this peer"),
        );
    };
    let tcp = match connect_target(inner, &target, addr).await {
        Ok(tcp) => tcp,
        Err((status, reason)) => {
            metrics.refused(peer, "export", "target_unreachable");
            return refuse_stream(respond, status, reason);
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut respond = respond;
    let send = match respond.send_response(Response::new(()), false) {
        Ok(send) => send,
        Err(e) => {
            tracing::debug!(%peer, %target, error = %e, "stream gone before it was accepted");
            return abort(tcp);
        }
    };
    run_stream(
        inner,
        peer,
        &target,
        "export",
        tcp,
        send,
        request.into_body(),
    )
    .await;
}

/// Where `target` is exported to `peer`: the shared table first, then the peer's own.
fn exported_address(inner: &Inner, peer: &str, target: &Target) -> Option<SocketAddr> {
    let shared = inner
        .exports
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(target)
        .copied();
    shared.or_else(|| {
        inner
            .peer_exports
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .and_then(|table| table.get(target))
            .copied()
    })
}

/// Connects to the exported `target` at `addr`; on failure, the status and reason to refuse
/// the stream with.
async fn connect_target(
    inner: &Inner,
    target: &Target,
    addr: SocketAddr,
) -> Result<TcpStream, (StatusCode, String)> {
    match timeout(
        inner.options.target_connect_timeout,
        TcpStream::connect(addr),
    )
    .await
    {
        Ok(Ok(tcp)) => Ok(tcp),
        Ok(Err(e)) => Err((
            StatusCode::BAD_GATEWAY,
            format!("cannot connect to {target} at {addr}: {e}"),
        )),
        Err(_) => Err((
            StatusCode::GATEWAY_TIMEOUT,
            format!("connecting to {target} at {addr} timed out"),
        )),
    }
}
