//! Set-up shared by the PostgreSQL test binaries.
//!
//! The server comes from `PARLEY_TEST_POSTGRES` (a connection URL whose role
//! may create databases; `.ci/postgres.sh` starts a throwaway one). Each test
//! binary run creates its own database, `parley_test_<pid>_<random>`, and
//! every check connects a fresh store to it: the checks pick unique names, so
//! they share the database safely, and runs never see each other's data.
//!
//! Without `PARLEY_TEST_POSTGRES` the checks print why and pass, except when
//! `CI` is set: there they fail, so a CI that lost its server cannot go green.

#![allow(dead_code)]

pub mod cluster;

use persistence::postgres::{PostgresConfig, PostgresStore};
use tokio::sync::OnceCell;

/// The variable naming the test server.
pub const URL_VAR: &str = "PARLEY_TEST_POSTGRES";

/// The test server's URL; `None` (after printing why) if the tests should skip.
///
/// # Panics
///
/// If the variable is unset while `CI` is set.
pub fn server_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{URL_VAR} is not set, but CI is: the PostgreSQL tests must run in CI \
                     (.ci/test starts a server with .ci/postgres.sh and exports {URL_VAR})"
                );
            }
            eprintln!(
                "skipping a PostgreSQL test: {URL_VAR} is not set \
                 (`. .ci/postgres.sh` starts a throwaway server and sets it)"
            );
            None
        }
    }
}

/// The database of this test binary run, created on first use.
static DATABASE: OnceCell<String> = OnceCell::const_new();

/// Creates a uniquely named database on the server at `url` and returns its name.
pub async fn create_database(url: &str) -> String {
    let name = format!(
        "parley_test_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {URL_VAR}={url}: {e}"));
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("create test database {name}: {e:?}"));
    drop(client);
    let _ = connection.await;
    name
}

/// The connection settings for this run's database, or `None` to skip.
pub async fn test_config() -> Option<PostgresConfig> {
    let url = server_url()?;
    let database = DATABASE.get_or_init(|| create_database(&url)).await;
    let config = PostgresConfig::from_url(&url)
        .expect("PARLEY_TEST_POSTGRES must be a valid connection string")
        .database(database)
        .max_connections(8);
    Some(config)
}

/// Settings for a database of its own, created for the caller, or `None` to skip.
pub async fn own_database_config() -> Option<PostgresConfig> {
    let url = server_url()?;
    let database = create_database(&url).await;
    let config = PostgresConfig::from_url(&url)
        .expect("PARLEY_TEST_POSTGRES must be a valid connection string")
        .database(&database);
    Some(config)
}

/// A store connected to this run's database (migrating it on first use), or
/// `None` to skip.
pub async fn store() -> Option<PostgresStore> {
    let config = test_config().await?;
    let store = PostgresStore::connect(config)
        .await
        .expect("connect the PostgreSQL store to the test database");
    Some(store)
}
