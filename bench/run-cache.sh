#!/usr/bin/env bash
# Cache hits: the same GET answered by the backend directly, by Portico from its cache,
# and by Portico passing it through (no cache), interleaved in one run. The backend
# (the harness's upstream, one thread) and Portico (workers: 1) share CPU 1, where only
# the one being measured is busy (hits never touch the backend); wrk runs on CPU 0.
#
#   bench/run-cache.sh                  # 3 rounds x 10 s per target and variant (~3 min)
#
# Variants: "instant" (/orders/1: a document the upstream formats at once, the cheapest
# backend there is) and "5ms" (/delay/5: a backend that spends 5 ms per answer, like a
# database read). Bar (issue #8): cache hits >= 1.5x the direct backend's throughput.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
UP_PORT=${UP_PORT:-18082}
GW_PORT=${GW_PORT:-18202}
ADMIN_PORT=${ADMIN_PORT:-18302}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cat > "$WORK/config/gateway.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, workers: 1 }
admin: { listen: 127.0.0.1:$ADMIN_PORT }
backends:
  up: { url: "http://127.0.0.1:$UP_PORT", timeout: 5s }
cache: { max_size: 64MiB }
telemetry: { access_log: false }
YAML
cat > "$WORK/config/routes/all.yaml" <<'YAML'
team: bench
prefix: /
auth: none
routes:
  - id: cached
    path: "/c/{*rest}"
    methods: [GET]
    cache: { ttl: 1h }
    proxy: { backend: up, path: "/{rest}" }
  - id: proxy
    path: "/p/{*rest}"
    proxy: { backend: up, path: "/{rest}" }
YAML
UP_CPU=1 start "$UP_PORT" "$GW_PORT" /p/json

hits() { curl -s "http://127.0.0.1:$ADMIN_PORT/cache" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["hits"], d["misses"])'; }
for variant in instant 5ms; do
    path=/orders/1; [[ $variant == 5ms ]] && path=/delay/5
    direct="http://127.0.0.1:$UP_PORT$path" cached="http://127.0.0.1:$GW_PORT/c$path" proxied="http://127.0.0.1:$GW_PORT/p$path"
    [[ $(curl -s -D - -o /dev/null "$cached" | tr -d '\r' | grep -i '^cache-status') ]] || { echo "no Cache-Status"; exit 1; }
    DURATION=2 measure "$direct" >/dev/null; DURATION=2 measure "$cached" >/dev/null; DURATION=2 measure "$proxied" >/dev/null  # warm-up
    for r in $(seq "$ROUNDS"); do
        order=(direct cached proxied); ((r % 2)) || order=(proxied cached direct)
        declare -A got=()
        for t in "${order[@]}"; do got[$t]=$(measure "${!t}"); done
        read -r d_rps d50 d99 <<<"${got[direct]}"; read -r c_rps c50 c99 <<<"${got[cached]}"; read -r p_rps p50 p99 <<<"${got[proxied]}"
        python3 -c "
d, d50, d99, c, c50, c99, p, p50, p99 = $d_rps, $d50, $d99, $c_rps, $c50, $c99, $p_rps, $p50, $p99
print(f'$variant round $r: direct {d:,.0f} req/s (p50 {d50:.2f} p99 {d99:.2f} ms) | cache hits {c:,.0f} req/s (p50 {c50:.2f} p99 {c99:.2f} ms) | pass-through {p:,.0f} req/s (p50 {p50:.2f} p99 {p99:.2f} ms) | hits/direct {c/d:.2f} hits/pass-through {c/p:.2f}')"
    done
done
read -r h m <<<"$(hits)"
echo "cache counters over the run: $h hits, $m misses (the backend was called once per path for the cached route)"
