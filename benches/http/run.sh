#!/usr/bin/env bash
# Load bench of weir's HTTP rate limit layer (run by hand, not in CI):
# builds examples/http_service in release, serves it on 127.0.0.1 only, and
# drives it with wrk (installed from Debian when missing), in alternating
# rounds, a fresh server per run:
#
#   overhead  — nothing refused (a quota far above the load): no limiter,
#               weir's shared layer, weir's keyed layer, tower_governor;
#   refusals  — 10 clients (the `x-client` header, clients.lua), each
#               offered thousands of requests a second against 200/s +
#               burst 20 per client: weir's keyed layer and tower_governor,
#               plus the admitted-per-client check against
#               burst + rate × span (wrk's measured span).
#
# It prints req/s and p50/p99 per run, then min/median/max per variant and
# the ratios. Bounded: DURATION seconds per run (default 5), CONNS
# connections (default 30), THREADS wrk threads (default 1: the machine
# this was written on has 2 cores, one for wrk, one for the server).
#
#   bash benches/http/run.sh                 # 3 rounds
#   ROUNDS=5 DURATION=10 bash benches/http/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-30}
THREADS=${THREADS:-1}
PORT=${PORT:-3917}
RATE=200
BURST=20
CLIENTS=10
# Nothing refused: one token a nanosecond, and a bucket of 1 ms of them.
# (With a bucket of 1 us, weir and governor alike refused a handful of
# requests in 400k: both read the CPU's timestamp counter, and reads on
# two cores can be that far apart.)
HUGE_RATE=1000000000
HUGE_BURST=1000000

if ! command -v wrk >/dev/null; then
    echo "== installing wrk (Debian)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq wrk
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq wrk
    fi
fi

echo "== cargo build --release --example http_service"
cargo build --release --example http_service
BIN=target/release/examples/http_service
URL="http://127.0.0.1:$PORT/hello"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

wait_for_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "the server did not start" >&2
    return 1
}

# run_one NAME LIMITER RATE BURST COUNT ROUND
run_one() {
    local name=$1 limiter=$2 rate=$3 burst=$4 count=$5 round=$6
    "$BIN" --serve --addr "127.0.0.1:$PORT" --limiter "$limiter" --rate "$rate" --burst "$burst" \
        >"$OUT/server.log" 2>&1 &
    local pid=$!
    wait_for_port
    local res
    if [ "$count" = 1 ]; then
        res=$(WRK_COUNT=1 WRK_CLIENTS=$CLIENTS wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" \
            -s benches/http/clients.lua "$URL")
    else
        res=$(WRK_CLIENTS=$CLIENTS wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" \
            -s benches/http/clients.lua "$URL")
    fi
    kill -INT "$pid"
    wait "$pid" || true
    local line
    line=$(grep '^RESULT' <<<"$res")
    local requests duration non2xx errors p50 p99
    requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
    duration=$(sed -E 's/.*duration_us=([0-9]+).*/\1/' <<<"$line")
    non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")
    errors=$(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$line")
    p50=$(sed -E 's/.*p50_us=([0-9]+).*/\1/' <<<"$line")
    p99=$(sed -E 's/.*p99_us=([0-9]+).*/\1/' <<<"$line")
    local rps
    rps=$(awk -v r="$requests" -v d="$duration" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    local check="-"
    if [ "$count" = 1 ]; then
        # Admitted per client against burst + rate × span.
        check=$(grep '^ADMITTED' <<<"$res" | awk -v b="$burst" -v r="$rate" -v d="$duration" '
            { n++; a = $3; bound = b + r * d / 1e6; ratio = a / bound;
              if (a > bound) over++;
              if (n == 1 || ratio < lo) lo = ratio; if (n == 1 || ratio > hi) hi = ratio }
            END { printf "%d clients, admitted/bound %.3f..%.3f, over the bound: %d", n, lo, hi, over + 0 }')
    fi
    printf '%-22s round %d  %9s req/s  p50 %6s us  p99 %7s us  non-2xx %8s  errors %s  %s\n' \
        "$name" "$round" "$rps" "$p50" "$p99" "$non2xx" "$errors" "$check"
    echo "$name $rps $p50 $p99 $non2xx" >>"$OUT/runs"
}

VARIANTS=(
    "overhead/none none $HUGE_RATE $HUGE_BURST 0"
    "overhead/weir weir $HUGE_RATE $HUGE_BURST 0"
    "overhead/weir-keyed weir-keyed $HUGE_RATE $HUGE_BURST 0"
    "overhead/governor governor $HUGE_RATE $HUGE_BURST 0"
    "refusals/weir-keyed weir-keyed $RATE $BURST 1"
    "refusals/governor governor $RATE $BURST 1"
)

echo "== wrk -t $THREADS -c $CONNS -d ${DURATION}s, $ROUNDS alternating rounds, 127.0.0.1:$PORT"
n=${#VARIANTS[@]}
for round in $(seq 1 "$ROUNDS"); do
    # Each round starts one variant later, so no variant always goes first.
    for i in $(seq 0 $((n - 1))); do
        read -r name limiter rate burst count <<<"${VARIANTS[$(((i + round - 1) % n))]}"
        run_one "$name" "$limiter" "$rate" "$burst" "$count" "$round"
    done
done

echo
echo "== summary: req/s min / median / max, p50 and p99 medians (us)"
sort -k1,1 -k2,2n "$OUT/runs" | awk '
    function flush() {
        if (name == "") return
        printf "%-22s %9d / %9d / %9d   p50 %6d   p99 %7d\n", name, r[1], r[int((k + 1) / 2)], r[k], med(p50s), med(p99s)
        medians[name] = r[int((k + 1) / 2)]
    }
    function med(s,   a, m, i, j, t) {
        m = split(s, a, " ")
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return a[int((m + 1) / 2)]
    }
    $1 != name { flush(); name = $1; k = 0; p50s = ""; p99s = "" }
    { r[++k] = $2; p50s = p50s " " $3; p99s = p99s " " $4 }
    END {
        flush()
        none = medians["overhead/none"]
        printf "\noverhead against no limiter (medians): weir %.1f%%, weir-keyed %.1f%%, tower_governor %.1f%%\n",
            100 * (1 - medians["overhead/weir"] / none),
            100 * (1 - medians["overhead/weir-keyed"] / none),
            100 * (1 - medians["overhead/governor"] / none)
        printf "refusal path (medians): weir-keyed / tower_governor = %.2fx\n",
            medians["refusals/weir-keyed"] / medians["refusals/governor"]
    }'
