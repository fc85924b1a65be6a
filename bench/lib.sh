# Shared setup of the single-process benchmarks (run-jwt.sh, run-keys.sh); sourced.
# Sets ROOT, HARNESS and WORK (a scratch dir), installs wrk, builds the harness's
# upstream and Portico, and kills every process started with `spawn` on exit.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${PORTICO_BENCH_HARNESS:-$ROOT/../shared/bench}
command -v wrk >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends wrk; }
(cd "$HARNESS/upstream" && cargo build --release -q)
(cd "$ROOT" && cargo build --release -q --bin portico)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/config/routes"

# spawn CPU COMMAND...: runs COMMAND pinned to CPU in the background; its pid is in PIDS.
spawn() { local cpu=$1; shift; taskset -c "$cpu" "$@" >/dev/null 2>>"$WORK/stderr.log" & PIDS+=($!); }

# start UP_PORT GW_PORT PATH: the upstream on CPU $UP_CPU (default 0), Portico on CPU 1
# serving $WORK/config, then waits until PATH answers through Portico.
start() {
    spawn "${UP_CPU:-0}" "$HARNESS/upstream/target/release/bench-upstream" "$1" --threads 1
    RUST_LOG=warn spawn 1 "$ROOT/target/release/portico" serve --config "$WORK/config"
    GW_PID=${PIDS[-1]}
    for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$2$3" && return; sleep 0.1; done
    echo "Portico did not answer $3:"; cat "$WORK/stderr.log"; exit 1
}

# ms LATENCY: one of wrk's latencies (`812.00us`, `1.20ms`, `2.01s`) in milliseconds.
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms/,"",v); print v } else { sub(/s/,"",v); print v*1000 } }'; }

# wrk_summary OUTPUT: "req/s p50_ms p99_ms" of a `wrk --latency` run's output.
wrk_summary() {
    echo "$(awk '/Requests\/sec/ {print $2}' <<<"$1") $(ms "$(awk '/^ +50%/ {print $2}' <<<"$1")") $(ms "$(awk '/^ +99%/ {print $2}' <<<"$1")")"
}

# measure URL [LUA]: one wrk run on CPU 0 (1 thread, $CONNS connections, $DURATION s)
# → "req/s p50_ms p99_ms".
measure() {
    wrk_summary "$(taskset -c 0 wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency ${2:+-s "$2"} "$1")"
}
