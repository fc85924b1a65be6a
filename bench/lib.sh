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

# start UP_PORT GW_PORT PATH: the upstream on CPU 0, Portico on CPU 1 serving
# $WORK/config, then waits until PATH answers through Portico.
start() {
    spawn 0 "$HARNESS/upstream/target/release/bench-upstream" "$1" --threads 1
    RUST_LOG=warn spawn 1 "$ROOT/target/release/portico" serve --config "$WORK/config"
    GW_PID=${PIDS[-1]}
    for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$2$3" && return; sleep 0.1; done
    echo "Portico did not answer $3:"; cat "$WORK/stderr.log"; exit 1
}
