#!/usr/bin/env bash
# Runs `parley-bench chat` against a cluster of NODES `parley` processes on
# loopback (node ids 1..NODES), on a fresh PostgreSQL database and a fresh bus
# topic, with users spread round-robin over the nodes, and prints the
# report: send->delivery latency split into same-node and cross-node
# deliveries, and the bus records produced and read per message, counted
# from the Kafka side (so any Parley version can be measured).
#
# usage: bench/cluster.sh PARLEY NODES BENCH [parley-bench chat flags...]
#   PARLEY  the parley binary the nodes run
#   NODES   how many nodes
#   BENCH   the parley-bench binary
# Needs PARLEY_TEST_POSTGRES (. .ci/postgres.sh) and PARLEY_TEST_KAFKA
# (. .ci/kafka.sh) in the environment. BUS=none runs the nodes without a
# bus (each delivers to its own clients only: use it with NODES=1 for a
# single node's figures). Node logs are kept in $CLUSTER_LOGS if set.
set -euo pipefail

parley=$1
nodes=$2
bench=$3
shift 3
: "${PARLEY_TEST_POSTGRES:?source .ci/postgres.sh first}"
: "${PARLEY_TEST_KAFKA:?source .ci/kafka.sh first}"
bus=${BUS:-kafka}

run=$(date +%s%N | tail -c 10)
work=$(mktemp -d /tmp/parley-cluster-bench.XXXXXX)
logs=${CLUSTER_LOGS:-$work}
database=parley_bench_$run
topic=parley-bench-$run
psql=psql
if [ -n "${PARLEY_TEST_POSTGRES_BIN:-}" ]; then
  psql=$PARLEY_TEST_POSTGRES_BIN/psql
fi
"$psql" -q "$PARLEY_TEST_POSTGRES" -c "CREATE DATABASE $database"
url=${PARLEY_TEST_POSTGRES%/*}/$database

pids=()
stop() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap stop EXIT

base=$((20000 + RANDOM % 20000))
mqtt_ports=()
for n in $(seq 1 "$nodes"); do
  mqtt=$((base + 2 * n))
  http=$((base + 2 * n + 1))
  mqtt_ports+=("$mqtt")
  mkdir -p "$work/node-$n"
  cat >"$work/node-$n/parley.toml" <<EOF
node_id = $n
data_dir = "$work/node-$n/data"
[storage]
backend = "postgres"
[storage.postgres]
url = "$url"
max_connections = 8
[cluster]
bus = "$bus"
[cluster.kafka]
bootstrap_servers = "$PARLEY_TEST_KAFKA"
topic = "$topic"
partitions = 3
[mqtt]
tcp = "127.0.0.1:$mqtt"
ws = "off"
[http]
listen = "127.0.0.1:$http"
[auth]
jwt_secret = "cluster-bench-secret-cluster-bench-secret"
[accounts]
signups_per_hour_per_address = 0.0
[login]
max_queued_hashes = 1024
[chat]
messages_per_sec = 100000.0
message_burst = 100000
message_requests = false
EOF
  PARLEY_LOG=warn "$parley" --config "$work/node-$n/parley.toml" >"$logs/node-$n.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$http/healthz" >/dev/null 2>&1; then
      break
    fi
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$http/healthz" >/dev/null || {
    echo "node $n did not start; its log:" >&2
    tail -n 30 "$logs/node-$n.log" >&2
    exit 1
  }
done

ports=$(IFS=,; echo "${mqtt_ports[*]}")
ids=$(seq -s, 1 "$nodes")
probe=()
if [ "$bus" = kafka ]; then
  probe=(--bus-kafka "$PARLEY_TEST_KAFKA" --bus-topic "$topic" --bus-nodes "$ids")
fi
"$bench" chat -H 127.0.0.1 -p "${mqtt_ports[0]}" --node-ports "$ports" \
  --signup-url "http://127.0.0.1:$((base + 3))" --user-prefix "u$run-" \
  --password bench-password "${probe[@]}" "$@"
