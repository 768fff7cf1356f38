//! The PostgreSQL store's start-up: migrations applied once however many
//! nodes start at the same time, kept across restarts, a newer schema
//! refused, and unreachable servers reported as errors rather than hangs.
//!
//! Needs `PARLEY_TEST_POSTGRES` (see `postgres_support`); each test that
//! migrates uses a database of its own.

mod postgres_support;

use std::time::{Duration, Instant};

use persistence::postgres::{PostgresConfig, PostgresStore, SCHEMA_VERSION};
use persistence::{MetadataStore, NewUser, StoreError};
use tokio::task::JoinSet;

/// How many stores start at once in the concurrency check.
const NODES: usize = 8;

/// A plain tokio-postgres client on `config`'s database, its connection
/// driven by a spawned task.
async fn raw_client(config: &PostgresConfig) -> tokio_postgres::Client {
    let url = std::env::var(postgres_support::URL_VAR).expect("checked by the caller");
    let mut pg: tokio_postgres::Config = url.parse().expect("a valid connection string");
    pg.dbname(config.database_name().expect("the config names a database"));
    let (client, connection) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// The rows of `schema_migrations`, as (version, name).
async fn migration_rows(config: &PostgresConfig) -> Vec<(i32, String)> {
    raw_client(config)
        .await
        .query(
            "SELECT version, name FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read schema_migrations")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_on_a_fresh_database_migrate_once() {
    let Some(config) = postgres_support::own_database_config().await else {
        return;
    };
    let mut nodes = JoinSet::new();
    for _ in 0..NODES {
        let config = config.clone();
        nodes.spawn(async move { PostgresStore::connect(config).await });
    }
    while let Some(joined) = nodes.join_next().await {
        let store = joined
            .expect("a starting node must not panic")
            .expect("every node starting at once must connect and find the schema ready");
        assert_eq!(
            store
                .schema_version()
                .await
                .expect("read the schema version"),
            SCHEMA_VERSION
        );
    }
    let rows = migration_rows(&config).await;
    let versions: Vec<i32> = rows.iter().map(|(version, _)| *version).collect();
    assert_eq!(
        versions,
        persistence::postgres::migration_versions(),
        "each migration must be recorded exactly once, got {rows:?}"
    );
    assert_eq!(
        versions,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "every version from the first to the newest, got {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_a_node_keeps_data_and_applies_nothing_again() {
    let Some(config) = postgres_support::own_database_config().await else {
        return;
    };
    let username = persistence::conformance::unique_username("restart");
    let first = PostgresStore::connect(config.clone())
        .await
        .expect("first start");
    let created = first
        .create_user(NewUser {
            username: username.clone(),
            password_hash: "pbkdf2-sha256$1$c2FsdA$aGFzaA".to_owned(),
            created_at_ms: 7,
        })
        .await
        .expect("create a user");
    drop(first);
    let before = migration_rows(&config).await;

    let second = PostgresStore::connect(config.clone())
        .await
        .expect("second start on a migrated database");
    assert_eq!(
        second.get_user(&username).await.expect("get_user"),
        Some(created),
        "data written before a restart must be there after it"
    );
    assert_eq!(
        migration_rows(&config).await,
        before,
        "a restart must not apply or record any migration again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_this_build_is_refused() {
    let Some(config) = postgres_support::own_database_config().await else {
        return;
    };
    PostgresStore::connect(config.clone())
        .await
        .expect("first start migrates");
    raw_client(&config)
        .await
        .execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .expect("record a future migration");

    let err = PostgresStore::connect(config)
        .await
        .expect_err("a database migrated by a newer Parley must be refused");
    match err {
        StoreError::Corrupt(why) => assert!(
            why.contains(&format!("version {}", SCHEMA_VERSION + 1)),
            "the error must name the database's version: {why}"
        ),
        other => panic!("a newer schema must be Corrupt, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_prompt_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
        .port();
    let config = PostgresConfig::from_url(&format!("postgres://parley@127.0.0.1:{port}/parley"))
        .expect("a valid URL")
        .connect_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5));
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(20), PostgresStore::connect(config))
        .await
        .expect("connecting to a closed port must not hang");
    match outcome {
        Err(StoreError::Unavailable(why)) => assert!(
            why.contains("PostgreSQL"),
            "the error must say PostgreSQL is the problem: {why}"
        ),
        other => panic!("a closed port must be Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the failure took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_malformed_connection_string_is_refused() {
    let err = PostgresConfig::from_url("postgres://[not a host").expect_err("malformed URL");
    assert!(
        matches!(&err, StoreError::Unavailable(why) if why.contains("connection string")),
        "got {err:?}"
    );
}
