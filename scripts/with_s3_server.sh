#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs a command with a local S3-compatible server: starts moto_server on a free port of
# 127.0.0.1, creates the bucket zanj-bench, exports AWS_ENDPOINT_URL, test credentials and
# ZANJ_BENCH_S3=s3://zanj-bench/run, runs the command, stops the server. Without moto_server,
# runs the command without them (saying so on stderr).
#
#   scripts/with_s3_server.sh build/bench/zanj_bench --layers 2
set -euo pipefail
if ! command -v moto_server >/dev/null 2>&1; then
  echo "with_s3_server: moto_server not on PATH; running without an object store" >&2
  exec "$@"
fi
port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp -t moto.XXXXXX.log)"
timeout 3600 moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 150); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_REGION=us-east-1 ZANJ_BENCH_S3="s3://zanj-bench/run"
if ! curl -s -f -o /dev/null -X PUT "$AWS_ENDPOINT_URL/zanj-bench"; then
  echo "with_s3_server: moto_server did not start (log: $(cat "$log"))" >&2
  exit 1
fi
"$@"
