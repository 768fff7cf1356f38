//! Where and how to connect to a Scylla (or Cassandra) cluster, and how the
//! keyspace is replicated.

use std::time::Duration;

use crate::StoreError;

/// Settings for [`ScyllaStore::connect`](super::ScyllaStore::connect).
#[derive(Clone)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`; the driver discovers the rest of the cluster.
    pub(crate) nodes: Vec<String>,
    /// The keyspace holding Parley's tables (created if missing).
    pub(crate) keyspace: String,
    /// The local datacenter: requests go to its replicas first, and a created
    /// keyspace uses `NetworkTopologyStrategy` with this datacenter.
    pub(crate) datacenter: Option<String>,
    /// Replicas of every row in a keyspace this store creates.
    pub(crate) replication_factor: u32,
    /// User name and password, if the cluster requires authentication.
    pub(crate) credentials: Option<(String, String)>,
    /// Longest opening a connection may take.
    pub(crate) connect_timeout: Duration,
    /// Longest one CQL request may take.
    pub(crate) request_timeout: Duration,
}

impl std::fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("datacenter", &self.datacenter)
            .field("replication_factor", &self.replication_factor)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl ScyllaConfig {
    /// Default keyspace name.
    pub const DEFAULT_KEYSPACE: &'static str = "parley";
    /// Default for [`ScyllaConfig::replication_factor`].
    pub const DEFAULT_REPLICATION_FACTOR: u32 = 3;
    /// Default for [`ScyllaConfig::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default for [`ScyllaConfig::request_timeout`].
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

    /// Settings for the cluster reachable at `nodes` (`host:port` each), with
    /// the defaults for everything else.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] if `nodes` is empty.
    pub fn new<S: Into<String>>(
        nodes: impl IntoIterator<Item = S>,
    ) -> Result<ScyllaConfig, StoreError> {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        if nodes.iter().all(|n| n.trim().is_empty()) {
            return Err(StoreError::Unavailable(
                "no Scylla contact point given".into(),
            ));
        }
        Ok(ScyllaConfig {
            nodes,
            keyspace: Self::DEFAULT_KEYSPACE.into(),
            datacenter: None,
            replication_factor: Self::DEFAULT_REPLICATION_FACTOR,
            credentials: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Uses keyspace `name`: 1 to 48 ASCII letters, digits or underscores,
    /// starting with a letter (Scylla's rule for unquoted names).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] naming the rule if `name` breaks it.
    pub fn keyspace(mut self, name: &str) -> Result<ScyllaConfig, StoreError> {
        validate_keyspace(name)?;
        self.keyspace = name.to_ascii_lowercase();
        Ok(self)
    }

    /// Prefers the replicas in datacenter `name`, and replicates a created
    /// keyspace there with `NetworkTopologyStrategy`.
    pub fn datacenter(mut self, name: &str) -> ScyllaConfig {
        self.datacenter = Some(name.to_owned());
        self
    }

    /// Sets how many replicas a created keyspace keeps (at least 1).
    pub fn replication_factor(mut self, factor: u32) -> ScyllaConfig {
        self.replication_factor = factor.max(1);
        self
    }

    /// Authenticates as `user` with `password`.
    pub fn credentials(mut self, user: &str, password: &str) -> ScyllaConfig {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Sets the longest opening a connection may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> ScyllaConfig {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the longest one CQL request may take.
    pub fn request_timeout(mut self, timeout: Duration) -> ScyllaConfig {
        self.request_timeout = timeout;
        self
    }

    /// The keyspace's `replication` map, as CQL.
    pub(crate) fn replication_cql(&self) -> String {
        match &self.datacenter {
            Some(dc) => format!(
                "{{'class': 'NetworkTopologyStrategy', '{}': {}}}",
                dc.replace('\'', "''"),
                self.replication_factor
            ),
            None => format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {}}}",
                self.replication_factor
            ),
        }
    }
}

/// Checks `name` against Scylla's rule for unquoted keyspace names.
fn validate_keyspace(name: &str) -> Result<(), StoreError> {
    let starts_with_letter = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let valid_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_with_letter || !valid_chars || name.len() > 48 {
        return Err(StoreError::Unavailable(format!(
            "invalid Scylla keyspace name {name:?}: use 1 to 48 letters, digits or \
             underscores, starting with a letter"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_a_contact_point() {
        assert!(ScyllaConfig::new(Vec::<String>::new()).is_err());
        assert!(ScyllaConfig::new([" "]).is_err());
        assert!(ScyllaConfig::new(["scylla:9042"]).is_ok());
    }

    #[test]
    fn keyspace_names_are_checked() {
        let config = ScyllaConfig::new(["a:9042"]).unwrap();
        for bad in ["", "1abc", "a-b", "a b", "a;DROP", &"k".repeat(49)] {
            assert!(config.clone().keyspace(bad).is_err(), "{bad:?} accepted");
        }
        let config = config.keyspace("Parley_Test_1").unwrap();
        assert_eq!(config.keyspace, "parley_test_1");
    }

    #[test]
    fn replication_follows_the_datacenter() {
        let config = ScyllaConfig::new(["a:9042"]).unwrap().replication_factor(1);
        assert_eq!(
            config.replication_cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        let config = config.datacenter("eu'west").replication_factor(0);
        assert_eq!(
            config.replication_cql(),
            "{'class': 'NetworkTopologyStrategy', 'eu''west': 1}"
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let config = ScyllaConfig::new(["a:9042"])
            .unwrap()
            .credentials("parley", "s3cret");
        let printed = format!("{config:?}");
        assert!(printed.contains("parley"));
        assert!(!printed.contains("s3cret"));
    }
}
