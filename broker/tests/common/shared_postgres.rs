//! Fresh databases on the shared PostgreSQL test server that
//! `PARLEY_TEST_POSTGRES` names (`. .ci/postgres.sh` starts a throwaway
//! one): every test that asks gets an empty database of its own, so tests
//! never see each other's data.
//!
//! Without the variable the tests print why and pass, except when `CI` is
//! set: there they fail, so a CI that lost its server cannot go green.

/// A URL of a fresh, empty database on the test server, or `None` (after
/// printing why) when the test should skip.
pub async fn fresh_database() -> Option<String> {
    let url = super::postgres_support::server_url()?;
    let name = super::postgres_support::create_database(&url).await;
    Some(with_database(&url, &name))
}

/// A plain client on the database at `url`, its connection driven by a
/// spawned task: for tests that look at or change rows behind a node's back.
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// `url` with its database replaced by `name` (URL or key=value form).
fn with_database(url: &str, name: &str) -> String {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (url, String::new()),
        };
        let scheme_end = base.find("://").expect("scheme") + 3;
        let host_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        format!("{}/{name}{query}", &base[..host_end])
    } else {
        format!("{url} dbname={name}")
    }
}

/// A random number for unique names.
pub fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u32
}
