//! Accept loops for MQTT over TCP, TLS (rustls) and WebSocket (`/mqtt`,
//! sub-protocol `mqtt`). Each accepted stream is served by
//! [`connection::serve`](super::connection::serve) on its own task, within
//! the `[listeners]` per-address cap and TLS / WebSocket handshake timeouts.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info};
use ws_stream_tungstenite::WsStream;

use super::connection::serve;
use super::sessions::TransportKind;
use super::MqttContext;
use crate::metrics::security::Refusal;
use crate::metrics::HandshakeFailure;
use tokio::time::timeout;

/// The transport a listener speaks.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls(TlsAcceptor),
    /// WebSocket on this HTTP path.
    WebSocket {
        /// The accepted path, e.g. `/mqtt`.
        path: Arc<str>,
    },
}

/// Accepts connections until shutdown, spawning one tracked task per connection.
pub async fn accept_loop(
    listener: TcpListener,
    transport: Transport,
    ctx: Arc<MqttContext>,
    tasks: TaskTracker,
) {
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually fd exhaustion: back off briefly instead of spinning.
                error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let limits = ctx.limits.listeners().clone();
        let Some(slot) = limits.caps.admit(peer.ip()) else {
            ctx.metrics.defended(Refusal::MqttConnectionsPerAddress);
            debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        tcp.set_nodelay(true).ok();
        let ctx = ctx.clone();
        let transport = transport.clone();
        // One task type per transport, so a TCP connection's task is sized
        // for TCP alone (a TLS session's state is several KiB).
        match transport {
            Transport::Tcp => {
                tasks.spawn(async move {
                    let _slot = slot;
                    serve(tcp, peer, TransportKind::Tcp, ctx).await
                });
            }
            Transport::Tls(acceptor) => {
                tasks.spawn(async move {
                    let _slot = slot;
                    serve_tls(tcp, peer, acceptor, limits.tls_handshake_timeout, ctx).await
                });
            }
            Transport::WebSocket { path } => {
                tasks.spawn(async move {
                    let _slot = slot;
                    serve_websocket(tcp, peer, &path, limits.ws_upgrade_timeout, ctx).await
                });
            }
        }
    }
    info!(?local, "listener stopped");
}

/// Serves a TLS connection once its handshake completes in time.
async fn serve_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    ctx: Arc<MqttContext>,
) {
    let tls = match timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            ctx.metrics.handshake_failed(HandshakeFailure::Network);
            debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            ctx.metrics.defended(Refusal::TlsHandshakeTimeout);
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    serve(tls, peer, TransportKind::Tls, ctx).await
}

/// Serves a WebSocket connection once its upgrade on `path` completes in time.
async fn serve_websocket(
    tcp: TcpStream,
    peer: SocketAddr,
    path: &str,
    upgrade_timeout: Duration,
    ctx: Arc<MqttContext>,
) {
    let ws = match timeout(upgrade_timeout, accept_websocket(tcp, path)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            ctx.metrics.handshake_failed(HandshakeFailure::Network);
            debug!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            ctx.metrics.defended(Refusal::WsUpgradeTimeout);
            debug!(%peer, "WebSocket upgrade timed out");
            return;
        }
    };
    serve(ws, peer, TransportKind::WebSocket, ctx).await
}

type WsTransport = WsStream<async_tungstenite::tokio::TokioAdapter<TcpStream>>;

/// Upgrades an HTTP request on `path` to a WebSocket speaking the `mqtt` sub-protocol.
// The handshake callback's error type is tungstenite's HTTP response.
#[allow(clippy::result_large_err)]
async fn accept_websocket(
    tcp: TcpStream,
    path: &str,
) -> Result<WsTransport, async_tungstenite::tungstenite::Error> {
    let check = |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
        if request.uri().path() != path {
            let mut refusal = ErrorResponse::new(Some(format!(
                "no MQTT endpoint at {}",
                request.uri().path()
            )));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            return Err(refusal);
        }
        let offers_mqtt = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
        if offers_mqtt {
            response
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        }
        Ok(response)
    };
    let ws = async_tungstenite::tokio::accept_hdr_async(tcp, check).await?;
    Ok(WsStream::new(ws))
}

/// Why the TLS listener could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        source: io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} contains no PEM certificate")]
    NoCertificate(String),
    /// The key file holds no private key.
    #[error("{0} contains no PEM private key")]
    NoKey(String),
    /// rustls refused the pair.
    #[error("invalid certificate/key pair: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds a rustls acceptor from PEM certificate chain and key files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsSetupError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsSetupError::Read {
            path: cert.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate(cert.display().to_string()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsSetupError::Read {
            path: key.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsSetupError::NoKey(key.display().to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
