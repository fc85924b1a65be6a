#!/usr/bin/env bash
# Aggregation: one `aggregate` route making three backend calls vs the client making the
# same three calls one after another through the proxy. One Portico process (workers: 1,
# CPU 1), wrk and the harness's upstream on CPU 0; rounds alternate the order.
#
#   bench/run-aggregate.sh              # 3 rounds x 10 s per variant (~2.5 min)
#
# Variants: "fast" (the upstream's /orders, /users, /inventory documents, answered at
# once) and "20ms" (three /delay/20 calls). For the client-side page, wrk cycles the three
# proxied paths (bench/sequential.lua): pages/s = requests/s / 3, and a page's latency is
# three requests' (reported as 3 x the per-request p50 and p99, an estimate).
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
UP_PORT=${UP_PORT:-18081}
GW_PORT=${GW_PORT:-18201}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cat > "$WORK/config/gateway.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, workers: 1 }
backends:
  up: { url: "http://127.0.0.1:$UP_PORT", timeout: 5s }
telemetry: { access_log: false }
YAML
cat > "$WORK/config/routes/all.yaml" <<'YAML'
team: bench
prefix: /
auth: none
routes:
  - id: agg-fast
    path: /agg/fast/{id}
    aggregate:
      calls:
        order: { backend: up, path: "/orders/{id}" }
        user: { backend: up, path: "/users/{id}" }
        stock: { backend: up, path: "/inventory/{id}" }
  - id: agg-20ms
    path: /agg/20ms
    aggregate:
      calls:
        a: { backend: up, path: /delay/20 }
        b: { backend: up, path: /delay/20 }
        c: { backend: up, path: /delay/20 }
  - id: proxy
    path: "/p/{*rest}"
    proxy: { backend: up, path: "/{rest}" }
YAML
cat > "$WORK/fast.lua" <<'LUA'
local paths = {"/p/orders/1", "/p/users/1", "/p/inventory/1"}
local i = 0
request = function() i = i % 3 + 1; return wrk.format("GET", paths[i]) end
LUA
cat > "$WORK/20ms.lua" <<'LUA'
request = function() return wrk.format("GET", "/p/delay/20") end
LUA
start "$UP_PORT" "$GW_PORT" /p/json

for variant in fast 20ms; do
    url="http://127.0.0.1:$GW_PORT/agg/$variant"; [[ $variant == fast ]] && url+="/1"
    measure "$url" >/dev/null; measure "http://127.0.0.1:$GW_PORT" "$WORK/$variant.lua" >/dev/null  # warm-up
    for r in $(seq "$ROUNDS"); do
        if ((r % 2)); then a=$(measure "$url"); s=$(measure "http://127.0.0.1:$GW_PORT" "$WORK/$variant.lua")
        else s=$(measure "http://127.0.0.1:$GW_PORT" "$WORK/$variant.lua"); a=$(measure "$url"); fi
        read -r a_rps a_p50 a_p99 <<<"$a"; read -r s_rps s_p50 s_p99 <<<"$s"
        python3 -c "
a_rps, a50, a99, s_rps, s50, s99 = $a_rps, $a_p50, $a_p99, $s_rps, $s_p50, $s_p99
print(f'$variant round $r: aggregate {a_rps:,.0f} pages/s p50 {a50:.2f} ms p99 {a99:.2f} ms | client, 3 calls in turn {s_rps/3:,.0f} pages/s p50 ~{3*s50:.2f} ms p99 ~{3*s99:.2f} ms | pages/s ratio {a_rps/(s_rps/3):.2f}')"
    done
done
