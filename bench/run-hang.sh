#!/usr/bin/env bash
# Isolation: throughput and p99 of a route to a healthy backend, alone and while another
# backend of the same Portico process hangs (accepts, never answers) under HANGERS
# clients that keep requests to it in flight. Interleaved rounds, pinned: wrk, the
# upstream, the hanging backend and its clients on CPU 0, Portico (one worker) on CPU 1.
#
#   bench/run-hang.sh                      # 3 rounds x 10 s per mode (~1.5 min)
#   ROUNDS=5 HANGERS=400 bench/run-hang.sh
#
# The stuck backend has `timeout: 5s` and `max_concurrency: 100`: with 200 clients on
# it, 100 requests are held at the backend at any time (each ends in 504 after 5 s) and
# the others are refused at once with 503 BULKHEAD_FULL and `Retry-After: 1`, which the
# clients honour. Prints each round, and the median ratios hang / healthy (bar:
# throughput ≥ 0.9, p99 ≤ 1.1).
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
HANGERS=${HANGERS:-200}
UP_PORT=${UP_PORT:-18081}
STUCK_PORT=${STUCK_PORT:-18082}
GW_PORT=${GW_PORT:-18201}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cat > "$WORK/config/gateway.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, workers: 1 }
backends:
  healthy: { url: "http://127.0.0.1:$UP_PORT", timeout: 30s }
  stuck: { url: "http://127.0.0.1:$STUCK_PORT", timeout: 5s, max_concurrency: 100 }
telemetry: { access_log: false }
YAML
cat > "$WORK/config/routes/all.yaml" <<'YAML'
team: bench
prefix: /
auth: none
routes:
  - { id: stuck, path: "/stuck/{*rest}", proxy: { backend: stuck } }
  - { id: healthy, path: "/{*rest}", proxy: { backend: healthy } }
YAML

spawn 0 python3 "$ROOT/bench/hang.py" server "$STUCK_PORT"
start "$UP_PORT" "$GW_PORT" /json

run() { # → "req/s p99_ms"
    taskset -c 0 wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency "http://127.0.0.1:$GW_PORT/json" |
        awk '/Requests\/sec/ {rps=$2} /^ +99%/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; p99=v} END {print rps, p99}'
}
hung() { # the same run while HANGERS clients keep the stuck backend busy
    taskset -c 0 python3 "$ROOT/bench/hang.py" clients "http://127.0.0.1:$GW_PORT/stuck/x" "$HANGERS" > "$WORK/hangers.out" &
    local h=$!
    sleep 2
    run
    kill -TERM "$h"; wait "$h" || true
    echo "    stuck route answers during the run: $(cat "$WORK/hangers.out")" >&2
}
run >/dev/null   # warm-up
declare -a OK HANG
for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then o=$(run); h=$(hung); else h=$(hung); o=$(run); fi
    OK+=("$o"); HANG+=("$h")
    echo "round $r: healthy alone: $o | while stuck hangs: $h   (req/s p99_ms)"
done
python3 - "${OK[*]}" "${HANG[*]}" <<'PY'
import statistics, sys
ok = sys.argv[1].split(); hang = sys.argv[2].split()
ok_rps, ok_p99 = [float(x) for x in ok[0::2]], [float(x) for x in ok[1::2]]
h_rps, h_p99 = [float(x) for x in hang[0::2]], [float(x) for x in hang[1::2]]
t = statistics.median([b / a for a, b in zip(ok_rps, h_rps)])
p = statistics.median([b / a for a, b in zip(ok_p99, h_p99)])
print(f"\nmedian: healthy alone {statistics.median(ok_rps):,.0f} req/s p99 {statistics.median(ok_p99):.2f} ms; "
      f"while stuck hangs {statistics.median(h_rps):,.0f} req/s p99 {statistics.median(h_p99):.2f} ms")
print(f"ratios (median of per-round): throughput {t:.2f}, p99 {p:.2f}  (bar: >= 0.90, <= 1.10)")
PY
