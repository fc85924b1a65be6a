#!/usr/bin/env bash
# Rate-limiter memory under a flood of distinct keys: a route limited by `header:X-Key`,
# wrk sending a new key with every request for DURATION seconds (about a million keys at
# the default 40 s), Portico's RSS sampled before, at the end, and after the idle
# buckets were evicted.
#
#   bench/run-keys.sh                 # DURATION=40
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${PORTICO_BENCH_HARNESS:-$ROOT/../shared/bench}
DURATION=${DURATION:-40}
UP_PORT=${UP_PORT:-18082}
GW_PORT=${GW_PORT:-18202}
command -v wrk >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends wrk; }
(cd "$HARNESS/upstream" && cargo build --release -q)
(cd "$ROOT" && cargo build --release -q --bin portico)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/config/routes"
cat > "$WORK/config/gateway.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, workers: 1 }
backends:
  upstream: { url: "http://127.0.0.1:$UP_PORT", timeout: 30s }
telemetry: { access_log: false }
YAML
cat > "$WORK/config/routes/k.yaml" <<'YAML'
team: keys
prefix: /k
auth: none
rate_limit: [{ key: "header:X-Key", rate: 100/s, burst: 100 }]
routes:
  - { id: keyed, path: "/{*rest}", proxy: { backend: upstream } }
YAML
cat > "$WORK/keys.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/k/json", { ["X-Key"] = "k" .. n })
end
done = function(summary) io.write(string.format("keys sent: %d\n", summary.requests)) end
LUA
taskset -c 0 "$HARNESS/upstream/target/release/bench-upstream" "$UP_PORT" --threads 1 >/dev/null 2>&1 &
PIDS+=($!)
RUST_LOG=warn taskset -c 1 "$ROOT/target/release/portico" serve --config "$WORK/config" >/dev/null 2>&1 &
GW=$!
PIDS+=("$GW")
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$GW_PORT/k/json" && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$GW/status"; }
echo "RSS before: $(rss)"
taskset -c 0 wrk -t1 -c64 -d "${DURATION}s" -s "$WORK/keys.lua" "http://127.0.0.1:$GW_PORT/k/json" | grep -E "keys sent|Requests/sec"
echo "RSS at the end of the flood: $(rss)"
sleep 3
echo "RSS 3 s later (full buckets evicted): $(rss)"
