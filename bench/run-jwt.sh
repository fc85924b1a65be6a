#!/usr/bin/env bash
# Auth overhead: plain pass-through vs "JWT RS256 + rate limit" through the same Portico
# process (one worker), interleaved rounds, pinned like the pass-through benchmark:
# wrk and the upstream on CPU 0, Portico on CPU 1.
#
#   bench/run-jwt.sh                  # 3 rounds x 10 s per route (~1.5 min)
#   ROUNDS=5 DURATION=15 bench/run-jwt.sh
#
# Both routes get the same request, with the same `Authorization: Bearer` header (an
# RS256 token signed here with a fresh 2048-bit key): /plain/json is `auth: none`, no
# limit; /jwt/json verifies the token (iss, aud, exp; the verified-token cache in front
# of RSA) and checks a per-subject rate limit high enough never to refuse. Prints each
# run and the median ratio JWT / plain.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
UP_PORT=${UP_PORT:-18081}
GW_PORT=${GW_PORT:-18201}
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A key pair and a token valid for an hour.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/key.pem" 2>/dev/null
openssl pkey -in "$WORK/key.pem" -pubout -out "$WORK/pub.pem"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"bench"}' | b64url)
payload=$(printf '{"iss":"https://id.bench/","aud":"bench","sub":"user-1","iat":%d,"exp":%d}' "$now" $((now + 3600)) | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$WORK/key.pem" -binary | b64url)
TOKEN="$header.$payload.$signature"

{
    echo "server: { listen: 127.0.0.1:$GW_PORT, workers: 1 }"
    echo "backends:"
    echo "  upstream: { url: \"http://127.0.0.1:$UP_PORT\", timeout: 30s }"
    echo "auth:"
    echo "  users:"
    echo "    jwt:"
    echo "      issuer: https://id.bench/"
    echo "      audience: [bench]"
    echo "      algorithms: [RS256]"
    echo "      keys:"
    echo "        - kid: bench"
    echo "          pem: |"
    sed 's/^/            /' "$WORK/pub.pem"
    echo "telemetry: { access_log: false }"
} > "$WORK/config/gateway.yaml"
cat > "$WORK/config/routes/plain.yaml" <<'EOF'
team: plain
prefix: /plain
auth: none
routes:
  - { id: plain, path: "/{*rest}", proxy: { backend: upstream } }
EOF
cat > "$WORK/config/routes/jwt.yaml" <<'EOF'
team: jwt
prefix: /jwt
auth: users
rate_limit: [{ key: subject, rate: 10000000/s, burst: 10000000 }]
routes:
  - { id: jwt, path: "/{*rest}", proxy: { backend: upstream } }
EOF

start "$UP_PORT" "$GW_PORT" /plain/json
code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$GW_PORT/jwt/json")
[[ $code == 200 ]] || { echo "JWT route answered $code"; cat "$WORK/stderr.log"; exit 1; }

run() { # route → requests/s
    taskset -c 0 wrk -t1 -c "$CONNS" -d "${DURATION}s" -H "authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$GW_PORT/$1/json" | awk '/Requests\/sec/ {print $2}'
}
run plain >/dev/null; run jwt >/dev/null   # warm-up
declare -a PLAIN JWT
for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then p=$(run plain); j=$(run jwt); else j=$(run jwt); p=$(run plain); fi
    PLAIN+=("$p"); JWT+=("$j")
    printf 'round %d: plain %s req/s, jwt+limit %s req/s, ratio %.2f\n' "$r" "$p" "$j" "$(echo "$j / $p" | bc -l)"
done
python3 - "${PLAIN[*]}" "${JWT[*]}" <<'PY'
import statistics, sys
p = [float(x) for x in sys.argv[1].split()]
j = [float(x) for x in sys.argv[2].split()]
print(f"\nmedian: plain {statistics.median(p):,.0f} req/s, JWT RS256 + rate limit {statistics.median(j):,.0f} req/s, "
      f"ratio {statistics.median(j) / statistics.median(p):.2f} (median of per-round ratios {statistics.median([b / a for a, b in zip(p, j)]):.2f})")
PY
