//! The HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /healthz`
//! (liveness: 200 while serving, 503 once shutdown has begun).
//!
//! Plain hyper 1 over HTTP/1.1, nothing else on this port: it is meant for a
//! Prometheus scraper on a trusted network (default 127.0.0.1:9465).

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::Shutdown;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn respond(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn route(req: &Request<Incoming>, metrics: &Metrics, stopping: bool) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
    }
    match req.uri().path() {
        "/metrics" => respond(StatusCode::OK, PROMETHEUS_TEXT, metrics.render()),
        "/healthz" if stopping => respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "shutting down\n"),
        "/healthz" => respond(StatusCode::OK, TEXT, "ok\n"),
        _ => respond(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found (try /metrics or /healthz)\n",
        ),
    }
}

/// Serves until shutdown.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: Shutdown) {
    let mut stop = shutdown.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = crate::server::stopping(&mut stop) => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = route(&req, &metrics, *shutdown.borrow());
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            // Bounded: a scraper that never finishes cannot keep the task forever.
            match tokio::time::timeout(Duration::from_secs(60), conn).await {
                Ok(Err(e)) => debug!(%peer, error = %e, "metrics connection error"),
                Err(_) => debug!(%peer, "metrics connection closed after 60s"),
                Ok(Ok(())) => {}
            }
        });
    }
}
