//! A bare HTTP API for tests of the HTTP layer alone: `parley::http::serve`
//! on an ephemeral loopback port over a real embedded store, with every
//! optional part (admin, push, media, keys, storage) off and the web client
//! only where a test hands one in.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parley::auth::{AuthSettings, Authenticator};
use parley::http::web::WebState;
use parley::http::{self, HttpState};
use persistence::embedded::EmbeddedStore;
use persistence::MetadataStore;
use tokio::task::JoinHandle;

/// How long the tokens of a bare API stay valid unless a test says otherwise.
pub const TOKEN_TTL: Duration = Duration::from_secs(900);

/// An authenticator over `store` with test settings, issuing tokens valid for `token_ttl`.
pub fn authenticator(store: Arc<dyn MetadataStore>, token_ttl: Duration) -> Arc<Authenticator> {
    Arc::new(
        Authenticator::new(
            store,
            AuthSettings {
                jwt_secret: "http-test-secret-http-test-secret-http".into(),
                token_ttl,
                pbkdf2_iterations: 100_000,
                verified_cache_ttl: Duration::ZERO,
            },
        )
        .expect("authenticator"),
    )
}

/// The state of an API with accounts and tokens only: every optional part off.
pub fn bare_state(auth: Arc<Authenticator>) -> HttpState {
    HttpState {
        auth,
        metrics: Arc::new(parley::metrics::Metrics::new()),
        admin: None,
        push: None,
        media: None,
        keys: None,
        storage: None,
        web: None,
        metrics_access: Default::default(),
        signup: Default::default(),
    }
}

/// Serves `state` on an ephemeral loopback port until `shutdown` completes;
/// returns its base URL (`http://127.0.0.1:port`) and the server task.
pub async fn serve_state(
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (String, JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(http::serve(listener, state, Default::default(), shutdown));
    (format!("http://{addr}"), server)
}

/// A bare API over an embedded store in `dir`, serving the web client
/// `web` too if given, for as long as the test runs; returns its base URL.
pub async fn serve_bare(dir: &Path, web: Option<WebState>) -> String {
    let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedStore::open(dir).expect("open store"));
    let state = HttpState {
        web: web.map(Arc::new),
        ..bare_state(authenticator(store, TOKEN_TTL))
    };
    serve_state(state, std::future::pending()).await.0
}
