#!/usr/bin/env bash
# weir vs Go vs hand-written tokio on Go's own patterns, from one invocation
# so both sides are measured under the same machine load.
#
#   benches/go/run.sh          (needs `go`: apt-get install golang-go)
#
# Prints ns/item (median of 5 runs, 2 threads on both sides) and the ratios.
# VS_GO_RESULTS=<file> also keeps the raw `<side> <pattern> <ns>` lines
# there (`cargo xtask bench-chart --run` draws docs/benchmarks.svg from
# them).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v go >/dev/null 2>&1; then
    echo "go is not installed (apt-get install golang-go); skipping the Go side" >&2
    exit 0
fi

cargo build --release --bench vs_go >/dev/null 2>&1 || cargo build --release --bench vs_go
bin=$(ls -t target/release/deps/vs_go-* | grep -v '\.d$' | head -n 1)

export GOMAXPROCS=2
(cd benches/go && go build -o /tmp/weir-go-patterns patterns.go)

results=$(mktemp)
/tmp/weir-go-patterns >>"$results"
"$bin" --bench >>"$results"
/tmp/weir-go-patterns >>"$results"

echo "ns/item (median of 5; Go measured before and after weir, the lower Go figure kept)"
printf "%-20s %10s %10s %12s %12s %10s\n" pattern go weir handwritten weir/go weir/hand
awk '
    { key = $1 " " $2; v = $3 + 0
      if (!(key in best) || v < best[key]) best[key] = v
      pats[$2] = 1 }
    END {
        for (p in pats) {
            g = best["go " p]; w = best["weir " p]; h = best["hand " p]
            if (g) printf "%-20s %10.1f %10.1f %12.1f %12.2f %10.2f\n", p, g, w, h, w / g, (h ? w / h : 0)
            else   printf "%-20s %10s %10.1f %12.1f %12s %10.2f\n", p, "-", w, h, "-", (h ? w / h : 0)
        }
    }' "$results" | sort
# Group's target is against JoinSet, which only the Rust side has.
awk '$1 == "joinset" { j[$2] = $3 } $1 == "weir" { w[$2] = $3 }
     END { for (p in j) printf "%s: weir %.1f / JoinSet %.1f = %.2f\n", p, w[p], j[p], w[p] / j[p] }' "$results"
# `cargo xtask bench-chart --run` keeps the raw lines to draw them.
if [ -n "${VS_GO_RESULTS:-}" ]; then
    cp "$results" "$VS_GO_RESULTS"
fi
rm -f "$results"
