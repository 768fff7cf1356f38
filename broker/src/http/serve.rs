//! The HTTP server loop: hyper's HTTP/1 connections with the `[listeners]`
//! header timeout (which also bounds how long an idle keep-alive connection
//! waits for its next request), a per-request timeout covering the body
//! (408), and a cap on the connections one source address holds open. Each
//! request carries its peer as axum's `ConnectInfo<SocketAddr>`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, error, info};

use super::ApiError;
use crate::config::ListenersConfig;
use crate::listeners::AddressCaps;
use crate::metrics::security::Refusal;
use crate::metrics::Metrics;

/// How long in-flight requests get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting, lets in-flight requests finish and closes idle connections.
///
/// # Errors
///
/// Never at present; accept failures are logged and retried.
pub async fn serve_app(
    listener: TcpListener,
    app: Router,
    limits: ListenersConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let request_timeout = Duration::from_millis(limits.http_request_timeout_ms);
    let header_timeout = Duration::from_millis(limits.http_header_timeout_ms);
    let timeout_metrics = metrics.clone();
    let app = app.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let metrics = timeout_metrics.clone();
            async move {
                match tokio::time::timeout(request_timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => {
                        metrics.defended(Refusal::HttpRequestTimeout);
                        ApiError::RequestTimeout.into_response()
                    }
                }
            }
        },
    ));
    let caps = AddressCaps::new(limits.http_max_connections_per_address);
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually fd exhaustion: back off briefly instead of spinning.
                    error!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = caps.admit(peer.ip()) else {
            metrics.defended(Refusal::HttpConnectionsPerAddress);
            debug!(%peer, "HTTP connection refused: too many from this address");
            continue;
        };
        tcp.set_nodelay(true).ok();
        let app = app.clone();
        let stop = stop.clone();
        let metrics = metrics.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let app = app.clone();
                    async move {
                        let response: Response =
                            app.oneshot(request.map(axum::body::Body::new)).await?;
                        Ok::<_, Infallible>(response)
                    }
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    metrics.defended(Refusal::HttpHeaderTimeout);
                }
                debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    stop.cancel();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        info!("some HTTP connections did not finish within the drain timeout");
    }
    Ok(())
}

/// The peer of a request served by [`serve_app`].
pub type Peer = ConnectInfo<SocketAddr>;
