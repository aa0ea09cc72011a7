//! `flights-service`: the example app of the demo and the network tests (Liqo's "Offloading a
//! Service" tutorial serves such an app from london). It listens on `0.0.0.0:$PORT` (default
//! 7999) and answers `GET /schedule` with JSON: the flights, and which pod served the request
//! (`POD_NAME` and `POD_IP` from the environment, which testenv's kubelet stand-in sets), so a
//! test can tell the replicas behind a Service apart. Every other request gets 404.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

/// Port used when `PORT` is not set.
const DEFAULT_PORT: u16 = 7999;

/// Who is serving: reported in every schedule so clients see which replica answered.
#[derive(Debug, Clone, Default)]
struct Served {
    pod: String,
    pod_ip: String,
}

/// The schedule, in the order a departures board shows it.
const FLIGHTS: [(&str, &str, &str, &str); 4] = [
    ("BA117", "LHR", "JFK", "08:25"),
    ("VS3", "LHR", "JFK", "11:40"),
    ("AA101", "LHR", "JFK", "14:10"),
    ("DL4", "LHR", "JFK", "17:55"),
];

/// Answers one request: the schedule for `GET /schedule`, 404 for anything else.
fn respond(method: &Method, path: &str, served: &Served) -> Response<Full<Bytes>> {
    if method != Method::GET || path != "/schedule" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from_static(b"not found\n")))
            .expect("static response is valid");
    }
    let flights: Vec<_> = FLIGHTS
        .iter()
        .map(|(id, from, to, departure)| {
            json!({"id": id, "from": from, "to": to, "departure": departure})
        })
        .collect();
    let body = json!({"pod": served.pod, "podIP": served.pod_ip, "flights": flights});
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response is valid")
}

async fn handle(
    req: Request<Incoming>,
    served: Arc<Served>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(respond(req.method(), req.uri().path(), &served))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = match std::env::var("PORT") {
        Ok(p) => p.parse::<u16>().with_context(|| format!("PORT={p:?}"))?,
        Err(_) => DEFAULT_PORT,
    };
    let served = Arc::new(Served {
        pod: std::env::var("POD_NAME").unwrap_or_default(),
        pod_ip: std::env::var("POD_IP").unwrap_or_default(),
    });
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!(
        "flights-service: listening on {addr} (pod {:?})",
        served.pod
    );
    loop {
        let (stream, peer) = listener.accept().await.context("accepting")?;
        let served = served.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, served.clone()));
            if let Err(err) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("flights-service: connection from {peer}: {err}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn body(resp: Response<Full<Bytes>>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn schedule_lists_flights_and_the_serving_pod() {
        let served = Served {
            pod: "flights-service-abc".into(),
            pod_ip: "10.200.0.2".into(),
        };
        let resp = respond(&Method::GET, "/schedule", &served);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body(resp).await).unwrap();
        assert_eq!(v["pod"], "flights-service-abc");
        assert_eq!(v["podIP"], "10.200.0.2");
        let flights = v["flights"].as_array().unwrap();
        assert_eq!(flights.len(), FLIGHTS.len());
        assert_eq!(flights[0]["id"], "BA117");
        assert_eq!(flights[0]["to"], "JFK");
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_not_found() {
        let served = Served::default();
        for (method, path) in [
            (Method::GET, "/"),
            (Method::GET, "/schedule/1"),
            (Method::POST, "/schedule"),
        ] {
            let resp = respond(&method, path, &served);
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
            assert_eq!(&body(resp).await[..], b"not found\n");
        }
    }
}
