#!/usr/bin/env bash
# GraphQL: `{ orders { id customer { name } } }` (20 orders, 7 distinct customers) through
# one Portico process (workers: 1, CPU 1). The backends are a second Portico serving the
# demo's documents as static routes (CPU 0, with wrk), so the backend side is cheap and
# the same in every round. Three variants, interleaved over the rounds:
#
#   batched  customer with `batch`: one /users?ids=… call for the whole list → 2 calls
#   per-item customer without `batch`: one call per order, identical ones merged → 1 + 7
#   rest     the REST call GET /orders through the proxy, for scale (1 call)
#
#   bench/run-graphql.sh              # 3 rounds x 8 s per variant (~1.5 min)
#
# Backend calls per query come from the admin API's 10 s request counts (DURATION must
# stay below 10 s), divided by the queries wrk made.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
UP_PORT=${UP_PORT:-18081}
GW_PORT=${GW_PORT:-18201}
ADMIN_PORT=${ADMIN_PORT:-18202}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
((DURATION < 10)) || { echo "DURATION must be below 10 s (the admin API counts 10 s)"; exit 2; }

# The backend: a Portico with static answers.
mkdir -p "$WORK/backend/routes"
echo "server: { listen: 127.0.0.1:$UP_PORT, workers: 1 }
telemetry: { access_log: false }" > "$WORK/backend/gateway.yaml"
orders=$(python3 -c 'import json; print(json.dumps({"orders": [{"id": str(n), "status": "shipped", "customer_id": f"c-{n % 7}", "total": 10.5 * n} for n in range(1, 21)]}))')
users=$(python3 -c 'import json; print(json.dumps([{"id": f"c-{n}", "name": f"Customer c-{n}"} for n in range(7)]))')
cat > "$WORK/backend/routes/all.yaml" <<YAML
team: backend
prefix: /
auth: none
routes:
  - { id: orders, path: /orders, static: { body: $orders } }
  - { id: users, path: /users, static: { body: $users } }
  - { id: user, path: "/users/{id}", static: { body: { id: c-1, name: "Customer c-1" } } }
YAML
spawn 0 env RUST_LOG=warn "$ROOT/target/release/portico" serve --config "$WORK/backend"

cat > "$WORK/config/gateway.yaml" <<YAML
server: { listen: 127.0.0.1:$GW_PORT, workers: 1 }
admin: { listen: 127.0.0.1:$ADMIN_PORT }
backends:
  orders: { url: "http://127.0.0.1:$UP_PORT", timeout: 5s }
  users: { url: "http://127.0.0.1:$UP_PORT", timeout: 5s }
telemetry: { access_log: false }
YAML
cat > "$WORK/config/routes/all.yaml" <<'YAML'
team: bench
prefix: /
auth: none
routes:
  - { id: rest, path: /rest/orders, proxy: { backend: orders, path: /orders } }
graphql: { path: /graphql, schema: bench.graphql }
YAML
cat > "$WORK/config/routes/bench.graphql" <<'GRAPHQL'
type Query {
  orders: [Order!]! @rest(backend: "orders", path: "/orders") @map(from: "orders")
}
type Order {
  id: ID!
  customer_id: ID!
  customer: Customer @rest(backend: "users", path: "/users/{parent.customer_id}",
                           batch: { path: "/users?ids={keys}", key: "id" })
  customer_each: Customer @rest(backend: "users", path: "/users/{parent.customer_id}")
}
type Customer { id: ID! name: String! }
GRAPHQL
for v in batched per-item; do
    field=customer; [[ $v == per-item ]] && field=customer_each
    cat > "$WORK/$v.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query":"{ orders { id $field { name } } }"}'
LUA
done
RUST_LOG=warn spawn 1 "$ROOT/target/release/portico" serve --config "$WORK/config"
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$GW_PORT/rest/orders" && break; sleep 0.1; done
answer=$(curl -s -H 'content-type: application/json' -d '{"query":"{ orders { id customer { name } } }"}' "http://127.0.0.1:$GW_PORT/graphql")
python3 -c "import json,sys; d=json.loads(sys.argv[1]); assert len(d['data']['orders'])==20 and d['data']['orders'][0]['customer']['name'], d" "$answer"

calls() { curl -s "http://127.0.0.1:$ADMIN_PORT/backends" | python3 -c 'import json,sys; b=json.load(sys.stdin); print(sum(i["requests"] for x in b["backends"] for i in x["instances"]))'; }
run() { # variant → "req/s p50_ms p99_ms calls_per_request"
    local out url=http://127.0.0.1:$GW_PORT/graphql script=$WORK/$1.lua
    [[ $1 == rest ]] && { url=http://127.0.0.1:$GW_PORT/rest/orders; script=; }
    sleep 10.5  # let the admin API's 10 s window empty
    out=$(taskset -c 0 wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency ${script:+-s "$script"} "$url")
    local n; n=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "$(wrk_summary "$out") $(python3 -c "print($(calls) / $n)")"
}
variants=(batched per-item rest)
for r in $(seq "$ROUNDS"); do
    for v in "${variants[@]}"; do
        read -r rps p50 p99 per <<<"$(run "$v")"
        printf 'round %d %-8s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  backend calls/request %.2f\n' "$r" "$v" "$rps" "$p50" "$p99" "$per"
    done
    variants=("${variants[@]:1}" "${variants[0]}")  # rotate the order
done
