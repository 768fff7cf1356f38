#!/usr/bin/env bash
# Starts a throwaway S3-compatible server for Parley's media tests.
#
# Source it (`. .ci/s3.sh`) to get, in the calling shell:
#   PARLEY_TEST_S3             endpoint URL (path-style, region us-east-1)
#   PARLEY_TEST_S3_ACCESS_KEY  access key id
#   PARLEY_TEST_S3_SECRET_KEY  secret access key
# and a function `parley_s3_stop` that stops the server and deletes its data.
# Run it directly to start a server and print how to use and stop it.
#
# The server is s3s-fs (crates.io), an S3 server storing objects in a
# directory. It checks AWS Signature Version 4 signatures, presigned URLs'
# included, and refuses presigned URLs past their expiry: the media tests
# depend on both. It is installed with `cargo install` when missing (a few
# minutes of compiling, once per machine).
set -euo pipefail

PARLEY_S3S_VERSION=0.14.1

parley_s3_bin() {
  local bin
  for bin in "$(command -v s3s-fs 2>/dev/null || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"; do
    if [ -n "$bin" ] && [ -x "$bin" ]; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

if ! parley_s3_bin >/dev/null; then
  echo "installing: s3s-fs $PARLEY_S3S_VERSION (cargo install)"
  cargo install --quiet --locked s3s-fs --version "$PARLEY_S3S_VERSION" --features binary
fi
parley_s3s=$(parley_s3_bin) || {
  echo "s3.sh: s3s-fs is not installed and could not be" >&2
  exit 1
}

parley_s3_dir=$(mktemp -d /tmp/parley-s3.XXXXXX)
mkdir -p "$parley_s3_dir/data"
PARLEY_TEST_S3_ACCESS_KEY=parley-test-access-key
PARLEY_TEST_S3_SECRET_KEY=parley-test-secret-key-0123456789
parley_s3_pid=

parley_s3_stop() {
  if [ -n "$parley_s3_pid" ]; then
    kill "$parley_s3_pid" 2>/dev/null || true
    wait "$parley_s3_pid" 2>/dev/null || true
    parley_s3_pid=
  fi
  rm -rf "$parley_s3_dir"
}

# A port nothing listens on; if the server does not come up there (another
# process took the port first), the next port is tried.
parley_s3_port=
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 40000))
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    continue
  fi
  "$parley_s3s" --host 127.0.0.1 --port "$port" \
    --access-key "$PARLEY_TEST_S3_ACCESS_KEY" --secret-key "$PARLEY_TEST_S3_SECRET_KEY" \
    "$parley_s3_dir/data" >"$parley_s3_dir/server.log" 2>&1 &
  parley_s3_pid=$!
  for _ in $(seq 1 100); do
    if ! kill -0 "$parley_s3_pid" 2>/dev/null; then
      break
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      parley_s3_port=$port
      break
    fi
    sleep 0.1
  done
  if [ -n "$parley_s3_port" ]; then
    break
  fi
  kill "$parley_s3_pid" 2>/dev/null || true
  wait "$parley_s3_pid" 2>/dev/null || true
  parley_s3_pid=
done
if [ -z "$parley_s3_port" ]; then
  echo "s3.sh: the S3 server did not start; its log:" >&2
  cat "$parley_s3_dir/server.log" >&2 || true
  rm -rf "$parley_s3_dir"
  exit 1
fi

PARLEY_TEST_S3="http://127.0.0.1:$parley_s3_port"
export PARLEY_TEST_S3 PARLEY_TEST_S3_ACCESS_KEY PARLEY_TEST_S3_SECRET_KEY
echo "S3 for tests: PARLEY_TEST_S3=$PARLEY_TEST_S3"

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "export PARLEY_TEST_S3=$PARLEY_TEST_S3"
  echo "export PARLEY_TEST_S3_ACCESS_KEY=$PARLEY_TEST_S3_ACCESS_KEY"
  echo "export PARLEY_TEST_S3_SECRET_KEY=$PARLEY_TEST_S3_SECRET_KEY"
  echo "stop it with: kill $parley_s3_pid; rm -rf $parley_s3_dir"
  disown "$parley_s3_pid" 2>/dev/null || true
fi
