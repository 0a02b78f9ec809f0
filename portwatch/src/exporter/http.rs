//! The HTTP side: `/metrics` and `/healthz` with hyper, on the runtime of
//! the live loop.
//!
//! A scrape only clones the latest [`Published`] exposition out of a watch
//! channel (a reference count, no lock held across anything); the loop
//! publishes a new one each interval. A slow or stalled scraper holds a
//! connection task and a reference to one exposition, nothing the loop
//! waits for.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::exposition::Format;

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 32;
/// A client has this long to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// One exposition in both formats, rendered by the loop.
#[derive(Clone, Debug)]
pub struct Published {
    pub openmetrics: Bytes,
    pub prometheus: Bytes,
    /// When the loop rendered it: `/healthz` fails once it is stale.
    pub at: Instant,
}

/// Which format a scraper asked for: OpenMetrics when its Accept header
/// names it (Prometheus does), else Prometheus text.
pub fn negotiate(accept: Option<&str>) -> Format {
    match accept {
        Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
        _ => Format::Prometheus,
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one request from the latest exposition.
pub fn respond(
    method: &Method,
    path: &str,
    accept: Option<&str>,
    latest: Option<&Published>,
    stale_after: Duration,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match (path, latest) {
        ("/metrics", Some(p)) => {
            let format = negotiate(accept);
            let body = match format {
                Format::OpenMetrics => p.openmetrics.clone(),
                Format::Prometheus => p.prometheus.clone(),
            };
            let mut r = Response::new(Full::new(body));
            r.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(format.content_type()),
            );
            r
        }
        ("/metrics", None) => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        ("/healthz", Some(p)) if p.at.elapsed() <= stale_after => text(StatusCode::OK, "ok\n"),
        ("/healthz", _) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the event loop has not published metrics recently\n",
        ),
        ("/", _) => text(
            StatusCode::OK,
            "portwatch exporter: /metrics (Prometheus, OpenMetrics), /healthz\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}

/// Binds `addr` (so a taken port is reported before anything starts).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (--listen)"))
}

/// Serves until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    latest: watch::Receiver<Option<Arc<Published>>>,
    stale_after: Duration,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and the like: wait a little rather than spin.
                log::warn!("accepting a scrape connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let latest = latest.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let p = latest.borrow().clone();
                let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                let r = respond(
                    req.method(),
                    req.uri().path(),
                    accept,
                    p.as_deref(),
                    stale_after,
                );
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                log::debug!("scrape connection: {e}");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(age: Duration) -> Published {
        Published {
            openmetrics: Bytes::from_static(b"om\n# EOF\n"),
            prometheus: Bytes::from_static(b"prom\n"),
            at: Instant::now() - age,
        }
    }

    async fn body(r: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let b = r.into_body().collect().await.expect("body").to_bytes();
        String::from_utf8(b.to_vec()).expect("utf-8")
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    const STALE: Duration = Duration::from_secs(4);

    #[test]
    fn prometheus_asking_for_openmetrics_gets_it_and_others_get_text() {
        let p = published(Duration::ZERO);
        let prom_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                           version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let r = respond(&Method::GET, "/metrics", Some(prom_accept), Some(&p), STALE);
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        assert_eq!(block_on(body(r)), "om\n# EOF\n");
        let r = respond(&Method::GET, "/metrics", None, Some(&p), STALE);
        assert!(
            r.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        assert_eq!(block_on(body(r)), "prom\n");
    }

    #[test]
    fn healthz_fails_when_the_loop_stopped_publishing() {
        let fresh = published(Duration::from_secs(1));
        let stale = published(Duration::from_secs(10));
        let ok = respond(&Method::GET, "/healthz", None, Some(&fresh), STALE);
        assert_eq!(ok.status(), StatusCode::OK);
        let bad = respond(&Method::GET, "/healthz", None, Some(&stale), STALE);
        assert_eq!(bad.status(), StatusCode::SERVICE_UNAVAILABLE);
        let none = respond(&Method::GET, "/healthz", None, None, STALE);
        assert_eq!(none.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn metrics_before_the_first_publication_is_unavailable_not_empty() {
        let r = respond(&Method::GET, "/metrics", None, None, STALE);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let p = published(Duration::ZERO);
        let r = respond(&Method::GET, "/metrix", None, Some(&p), STALE);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = respond(&Method::POST, "/metrics", None, Some(&p), STALE);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
