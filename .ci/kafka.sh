#!/usr/bin/env bash
# Starts a throwaway Kafka-protocol broker (tansu, in-memory storage) for
# Parley's tests.
#
# Source it (`. .ci/kafka.sh`) to get, in the calling shell:
#   PARLEY_TEST_KAFKA  the broker's address, 127.0.0.1:PORT
# and a function `parley_kafka_stop` that stops the broker.
# Run it directly to start a broker and print how to use and stop it.
#
# Installs tansu with cargo (about 8 minutes on 2 cores) unless it is on PATH
# or in cargo's bin directory, and the C toolchain that the rdkafka crate's
# bundled librdkafka needs (configure + make; no TLS, SASL or compression
# libraries) if it is missing (Debian; run as root). Apache Kafka and
# Redpanda speak the same protocol; the tests run against any of them.
set -euo pipefail

parley_kafka_need_apt=()
command -v make >/dev/null 2>&1 || parley_kafka_need_apt+=(make)
command -v cc >/dev/null 2>&1 || parley_kafka_need_apt+=(gcc libc6-dev)
if [ ${#parley_kafka_need_apt[@]} -gt 0 ]; then
  echo "installing: ${parley_kafka_need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${parley_kafka_need_apt[@]}" >/dev/null
fi

parley_kafka_bin=$(command -v tansu 2>/dev/null || true)
if [ -z "$parley_kafka_bin" ]; then
  parley_kafka_bin=${CARGO_HOME:-$HOME/.cargo}/bin/tansu
fi
if [ ! -x "$parley_kafka_bin" ]; then
  echo "installing: tansu (cargo install, several minutes)"
  cargo install tansu --locked --features dynostore --quiet
  parley_kafka_bin=${CARGO_HOME:-$HOME/.cargo}/bin/tansu
fi

parley_kafka_dir=$(mktemp -d /tmp/parley-kafka.XXXXXX)
parley_kafka_pid=

parley_kafka_stop() {
  if [ -n "$parley_kafka_pid" ]; then
    kill "$parley_kafka_pid" 2>/dev/null || true
    wait "$parley_kafka_pid" 2>/dev/null || true
    parley_kafka_pid=
  fi
  rm -rf "$parley_kafka_dir"
}

# Whether something accepts TCP connections on 127.0.0.1:$1.
parley_kafka_listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nothing listens on; if the broker exits or does not listen within
# 60 s, the next port is tried.
parley_kafka_port=
for _ in $(seq 1 10); do
  port=$((20000 + RANDOM % 40000))
  if parley_kafka_listening "$port"; then
    continue
  fi
  "$parley_kafka_bin" broker \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ \
    >"$parley_kafka_dir/broker.log" 2>&1 &
  parley_kafka_pid=$!
  deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ] && kill -0 "$parley_kafka_pid" 2>/dev/null; do
    if parley_kafka_listening "$port"; then
      parley_kafka_port=$port
      break 2
    fi
    sleep 0.2
  done
  kill "$parley_kafka_pid" 2>/dev/null || true
  wait "$parley_kafka_pid" 2>/dev/null || true
  parley_kafka_pid=
done
if [ -z "$parley_kafka_port" ]; then
  echo "kafka.sh: tansu did not start; its log:" >&2
  cat "$parley_kafka_dir/broker.log" >&2 || true
  exit 1
fi

PARLEY_TEST_KAFKA="127.0.0.1:$parley_kafka_port"
export PARLEY_TEST_KAFKA
echo "Kafka-protocol broker (tansu) for tests: PARLEY_TEST_KAFKA=$PARLEY_TEST_KAFKA"

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Run directly: leave the broker running for the caller.
  disown "$parley_kafka_pid" 2>/dev/null || true
  echo "export PARLEY_TEST_KAFKA=$PARLEY_TEST_KAFKA"
  echo "stop it with: kill $parley_kafka_pid; rm -rf $parley_kafka_dir"
fi
