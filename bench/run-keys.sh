#!/usr/bin/env bash
# Rate-limiter memory under a flood of distinct keys: a route limited by `header:X-Key`,
# wrk sending a new key with every request for DURATION seconds (about a million keys at
# the default 40 s), Portico's RSS sampled before, at the end, and after the idle
# buckets were evicted.
#
#   bench/run-keys.sh                 # DURATION=40
set -euo pipefail
DURATION=${DURATION:-40}
UP_PORT=${UP_PORT:-18082}
GW_PORT=${GW_PORT:-18202}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
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
start "$UP_PORT" "$GW_PORT" /k/json
GW=$GW_PID
rss() { awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$GW/status"; }
echo "RSS before: $(rss)"
taskset -c 0 wrk -t1 -c64 -d "${DURATION}s" -s "$WORK/keys.lua" "http://127.0.0.1:$GW_PORT/k/json" | grep -E "keys sent|Requests/sec"
echo "RSS at the end of the flood: $(rss)"
sleep 3
echo "RSS 3 s later (full buckets evicted): $(rss)"
