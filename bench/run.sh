#!/usr/bin/env bash
# Pass-through benchmark: a direct backend, Portico and nginx (one worker each,
# keep-alive to the backend), interleaved over several rounds in one run, using the
# peer harness in ../shared/bench (or $PORTICO_BENCH_HARNESS).
#
#   bench/run.sh                       # pinned and unpinned, 3 rounds x 10 s (~6 min)
#   MODES=pinned ROUNDS=5 bench/run.sh # any harness option by environment
#   bench/run.sh --path /bytes/16384   # extra arguments go to the harness
#
# Installs what it needs: wrk and nginx (apt), the harness's upstream and Portico
# (cargo build --release). Prints the harness's table, then Portico's ratios to nginx.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${PORTICO_BENCH_HARNESS:-$ROOT/../shared/bench}
[[ -x $HARNESS/run-proxy-bench.sh ]] || { echo "no harness at $HARNESS (set PORTICO_BENCH_HARNESS)" >&2; exit 2; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v taskset >/dev/null || need+=(util-linux)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
fi
(cd "$HARNESS/upstream" && cargo build --release -q)
(cd "$ROOT" && cargo build --release -q --bin portico)

OUT=${OUT_DIR:-$ROOT/bench/runs/$(date +%Y%m%d-%H%M%S)}
PORTICO="portico@18200=env UPSTREAM=http://{UPSTREAM} RUST_LOG=warn $ROOT/target/release/portico serve --config $ROOT/bench/config --listen 127.0.0.1:{PORT}"
"$HARNESS/run-proxy-bench.sh" --modes "${MODES:-pinned,unpinned}" --rounds "${ROUNDS:-3}" --out "$OUT" "$@" nginx-w1 "$PORTICO"

python3 - "$OUT/runs.jsonl" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    if not r.get("final", True) or r.get("disturbed"):
        continue
    if r.get("target_cpu_s") is not None and r.get("requests"):
        r["cpu_us_per_req"] = r["target_cpu_s"] / r["requests"] * 1e6
    runs[(r["mode"], r["phase"], r["target"])].append(r)
def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")
print("\n## Portico vs nginx (medians of the undisturbed runs)\n")
print("| mode | Portico req/s | nginx req/s | req/s ratio | Portico p99 ms | nginx p99 ms | p99 ratio | Portico CPU µs/req | nginx CPU µs/req |")
print("|---|---|---|---|---|---|---|---|---|")
for (mode, phase, target), rows in sorted(runs.items()):
    if target != "portico":
        continue
    ng = runs.get((mode, phase, "nginx-w1"), [])
    p, n = med(rows, "rps"), med(ng, "rps")
    p99, n99 = med(rows, "p99_ms"), med(ng, "p99_ms")
    pc, nc = med(rows, "cpu_us_per_req"), med(ng, "cpu_us_per_req")
    print(f"| {mode} | {p:,.0f} | {n:,.0f} | {p/n:.2f} | {p99:.2f} | {n99:.2f} | {p99/n99:.2f} | {pc:.1f} | {nc:.1f} |")
PY
