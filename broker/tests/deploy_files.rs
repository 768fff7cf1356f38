//! The deployment files in `deploy/` agree with Parley itself: every node
//! environment in the docker-compose file and the Kubernetes manifest passes
//! `parley --check-config`, and the ports, probes, service names and scrape
//! targets they declare are the ones that configuration listens on; the
//! Kubernetes pods keep their data directory across container restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn load_yaml(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// `map[key]`, falling back to the map merged in with `<<:` (docker-compose
/// extension fields).
fn get<'a>(map: &'a Yaml, key: &str) -> &'a Yaml {
    let own = &map[key];
    if !own.is_badvalue() {
        return own;
    }
    &map["<<"][key]
}

fn str_of(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// A mapping's entries as strings, with the `<<:` merged entries underneath.
fn string_map(map: &Yaml) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(hash) = map["<<"].as_hash() {
        for (k, v) in hash {
            out.insert(str_of(k), str_of(v));
        }
    }
    for (k, v) in map.as_hash().expect("a mapping") {
        if k.as_str() != Some("<<") {
            out.insert(str_of(k), str_of(v));
        }
    }
    out
}

/// Runs `parley --check-config` with exactly `env` (and the example config
/// file the image ships) and returns the effective configuration.
fn check_config(env: &BTreeMap<String, String>) -> toml::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("--check-config")
        .arg("--config")
        .arg(deploy("parley.toml"))
        .env_clear()
        .envs(env)
        .output()
        .expect("run parley --check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "parley --check-config refused {env:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.parse().expect("--check-config prints TOML")
}

fn port_of(config: &toml::Value, table: &str, key: &str) -> u16 {
    let listen = config[table][key].as_str().expect("a listen address");
    listen
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("{table}.{key} = {listen:?} has no port"))
}

/// `host:port` or a URL's host and port.
fn host_and_port(address: &str) -> (String, u16) {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address:?} has no port"));
    (host.to_owned(), port.parse().expect("a port number"))
}

#[test]
fn compose_nodes_pass_check_config_and_expose_their_ports() {
    let compose = &load_yaml("docker-compose.yml")[0];
    let services = compose["services"].as_hash().expect("services");
    let names: BTreeSet<String> = services.keys().map(str_of).collect();
    let nodes: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("parley"))
        .collect();
    assert_eq!(nodes, ["parley1", "parley2", "parley3"]);

    let mut node_ids = BTreeSet::new();
    let mut metrics_ports = BTreeSet::new();
    for name in &nodes {
        let service = &compose["services"][*name];
        let env = string_map(get(service, "environment"));
        assert!(
            env.keys().all(|k| k.starts_with("PARLEY_")),
            "{name}: {env:?}"
        );
        let config = check_config(&env);
        node_ids.insert(config["node_id"].as_integer().expect("node_id"));

        assert_eq!(config["storage"]["backend"].as_str(), Some("postgres"));
        let (db_host, db_port) =
            host_and_port(config["storage"]["postgres"]["url"].as_str().expect("url"));
        assert!(names.contains(&db_host), "{name}: no service {db_host}");
        assert_eq!(db_port, 5432);
        assert_eq!(config["cluster"]["bus"].as_str(), Some("kafka"));
        let bootstrap = config["cluster"]["kafka"]["bootstrap_servers"]
            .as_str()
            .expect("bootstrap_servers");
        let (kafka_host, kafka_port) = host_and_port(bootstrap);
        assert!(
            names.contains(&kafka_host),
            "{name}: no service {kafka_host}"
        );
        let kafka_env = string_map(&compose["services"][kafka_host.as_str()]["environment"]);
        assert!(
            kafka_env["KAFKA_ADVERTISED_LISTENERS"].contains(&format!("{kafka_host}:{kafka_port}")),
            "Kafka advertises {bootstrap}"
        );
        let (media_host, _) =
            host_and_port(config["media"]["endpoint"].as_str().expect("endpoint"));
        assert!(
            names.contains(&media_host),
            "{name}: no service {media_host}"
        );
        assert_eq!(config["storage"]["history"].as_str(), Some("scylla"));
        let scylla_nodes = config["storage"]["scylla"]["nodes"]
            .as_str()
            .expect("storage.scylla.nodes");
        let (scylla_host, scylla_port) = host_and_port(scylla_nodes);
        assert!(
            names.contains(&scylla_host),
            "{name}: no service {scylla_host}"
        );
        assert_eq!(scylla_port, 9042, "Scylla's CQL port");
        for dependency in ["postgres", "kafka", "scylla"] {
            assert!(
                !get(service, "depends_on")[dependency].is_badvalue(),
                "{name} must wait for {dependency}"
            );
        }

        let mqtt = port_of(&config, "mqtt", "tcp");
        let http = port_of(&config, "http", "listen");
        let metrics = port_of(&config, "metrics", "listen");
        metrics_ports.insert(metrics);
        let exposed: BTreeSet<u16> = get(service, "expose")
            .as_vec()
            .expect("expose")
            .iter()
            .map(|p| str_of(p).parse().expect("a port"))
            .collect();
        assert!(
            exposed.contains(&mqtt) && exposed.contains(&http) && exposed.contains(&metrics),
            "{name}: {exposed:?}"
        );
        let published: Vec<u16> = service["ports"]
            .as_vec()
            .expect("ports")
            .iter()
            .map(|p| {
                str_of(p)
                    .rsplit_once(':')
                    .expect("host:container")
                    .1
                    .parse()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            published,
            [mqtt, http],
            "{name} publishes MQTT and HTTP, not the metrics listener"
        );
        let healthcheck = get(service, "healthcheck")["test"]
            .as_vec()
            .expect("healthcheck")
            .iter()
            .map(str_of)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            healthcheck.contains(&format!("127.0.0.1/{http}")) && healthcheck.contains("/healthz"),
            "{healthcheck}"
        );
    }
    assert_eq!(node_ids.len(), nodes.len(), "every node has its own id");

    // Prometheus scrapes each node's metrics listener.
    let prometheus = &load_yaml("prometheus.yml")[0];
    let targets: BTreeSet<String> = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
        .as_vec()
        .expect("targets")
        .iter()
        .map(str_of)
        .collect();
    let expected: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| metrics_ports.iter().map(move |p| format!("{n}:{p}")))
        .collect();
    assert_eq!(targets, expected);
    assert_eq!(
        prometheus["scrape_configs"][0]["metrics_path"].as_str(),
        Some("/metrics")
    );
    for mounted in [
        "prometheus.yml",
        "grafana/provisioning",
        "grafana/parley-dashboard.json",
    ] {
        assert!(
            deploy(mounted).exists(),
            "deploy/{mounted} is mounted but missing"
        );
    }
}

#[test]
fn kubernetes_statefulset_passes_check_config_and_probes_its_ports() {
    let docs = load_yaml("k8s/parley.yaml");
    let kind_of = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let set = kind_of("StatefulSet");
    let name = set["metadata"]["name"].as_str().expect("name");
    let container = &set["spec"]["template"]["spec"]["containers"][0];

    // Secrets come from a Secret; stand-ins of the right shape are used here.
    let mut env = BTreeMap::new();
    for entry in container["env"].as_vec().expect("env") {
        let key = str_of(&entry["name"]);
        let value = if entry["value"].is_badvalue() {
            assert!(!entry["valueFrom"]["secretKeyRef"].is_badvalue(), "{key}");
            match key.as_str() {
                "PARLEY_STORAGE__POSTGRES__URL" => {
                    "postgres://parley:pw@postgres:5432/parley".into()
                }
                _ => "k8s-secret-k8s-secret-k8s-secret-0123456789".into(),
            }
        } else {
            str_of(&entry["value"])
        };
        env.insert(key, value);
    }
    let command = container["command"]
        .as_vec()
        .expect("command")
        .iter()
        .map(str_of)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        command.contains("PARLEY_NODE_ID=${HOSTNAME##*-}")
            && command.contains("exec /usr/local/bin/parley"),
        "the pod ordinal becomes the node id: {command}"
    );
    env.insert("PARLEY_NODE_ID".into(), "2".into());
    let config = check_config(&env);
    assert_eq!(config["node_id"].as_integer(), Some(2));

    let ports: BTreeMap<String, u16> = container["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                str_of(&p["name"]),
                p["containerPort"].as_i64().expect("containerPort") as u16,
            )
        })
        .collect();
    assert_eq!(ports["mqtt"], port_of(&config, "mqtt", "tcp"));
    assert_eq!(ports["mqtt-ws"], port_of(&config, "mqtt", "ws"));
    assert_eq!(ports["http"], port_of(&config, "http", "listen"));
    assert_eq!(ports["metrics"], port_of(&config, "metrics", "listen"));
    let annotations = &set["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        str_of(&annotations["prometheus.io/port"])
            .parse::<u16>()
            .ok(),
        Some(ports["metrics"]),
        "Prometheus scrapes the metrics listener"
    );
    // Readiness includes the store; liveness does not (a database outage
    // must not restart the pods).
    for (probe, path) in [("readinessProbe", "/healthz"), ("livenessProbe", "/livez")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("http"), "{probe}");
    }

    // The data directory (the image's) outlives container restarts, so a
    // restarted container is the same node lease holder.
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).expect("Dockerfile");
    let data_dir = dockerfile
        .split_whitespace()
        .find_map(|word| word.strip_prefix("PARLEY_DATA_DIR="))
        .expect("the image sets PARLEY_DATA_DIR");
    let mount = container["volumeMounts"]
        .as_vec()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(data_dir))
        .unwrap_or_else(|| panic!("no volume mounted on the data directory {data_dir}"));
    let volume = set["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the data directory's volume");
    assert!(
        !volume["emptyDir"].is_badvalue(),
        "the data directory lives as long as the pod: {volume:?}"
    );

    let service = kind_of("Service");
    assert_eq!(
        service["spec"]["selector"]["app"],
        set["spec"]["template"]["metadata"]["labels"]["app"]
    );
    for port in service["spec"]["ports"].as_vec().expect("service ports") {
        let target = str_of(&port["targetPort"]);
        assert!(
            ports.contains_key(&target),
            "Service targets unknown port {target}"
        );
    }
    // History goes to the `scylla` Service of k8s/scylla.yaml, on its CQL port.
    assert_eq!(config["storage"]["history"].as_str(), Some("scylla"));
    let (scylla_host, scylla_port) = host_and_port(
        config["storage"]["scylla"]["nodes"]
            .as_str()
            .expect("storage.scylla.nodes"),
    );
    let scylla_docs = load_yaml("k8s/scylla.yaml");
    let scylla_service = scylla_docs
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("Service")
                && d["metadata"]["name"].as_str() == Some(scylla_host.as_str())
        })
        .unwrap_or_else(|| panic!("k8s/scylla.yaml has no Service {scylla_host}"));
    let cql = scylla_service["spec"]["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .find(|p| p["port"].as_i64() == Some(i64::from(scylla_port)))
        .unwrap_or_else(|| panic!("Service {scylla_host} has no port {scylla_port}"));
    let scylla_set = scylla_docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("StatefulSet"))
        .expect("a Scylla StatefulSet");
    assert_eq!(
        scylla_service["spec"]["selector"]["app"],
        scylla_set["spec"]["template"]["metadata"]["labels"]["app"]
    );
    let scylla_ports = &scylla_set["spec"]["template"]["spec"]["containers"][0]["ports"];
    let target = scylla_ports
        .as_vec()
        .expect("Scylla container ports")
        .iter()
        .find(|p| p["name"] == cql["targetPort"])
        .expect("the CQL target port is a container port");
    assert_eq!(target["containerPort"].as_i64(), Some(9042));

    let hpa = kind_of("HorizontalPodAutoscaler");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["kind"].as_str(),
        Some("StatefulSet")
    );
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"].as_str(), Some(name));
}

#[test]
fn the_image_exposes_the_default_ports() {
    let dockerfile = std::fs::read_to_string(deploy("Dockerfile")).expect("Dockerfile");
    let exposed: BTreeSet<u16> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| {
            l.split_whitespace()
                .map(|p| p.parse::<u16>().expect("a port"))
        })
        .collect();
    let config = check_config(&BTreeMap::new());
    let expected: BTreeSet<u16> = [
        port_of(&config, "mqtt", "tcp"),
        port_of(&config, "mqtt", "ws"),
        port_of(&config, "http", "listen"),
    ]
    .into();
    assert_eq!(exposed, expected);
}
