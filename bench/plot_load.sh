#!/usr/bin/env bash
# Plots load_bench reports (one per load level) into a PNG: output tokens/s, and time to first
# token and inter-token latency at p50/p99, against the load (concurrency, or the arrival rate of
# open-loop runs).
#
#   for c in 1 4 16 64; do load_bench --model_dir=$M --concurrency=$c --out=c$c.json; done
#   bench/plot_load.sh load.png c1.json c4.json c16.json c64.json
set -euo pipefail
out="$1"; shift
data="$(mktemp)"
trap 'rm -f "$data"' EXIT
python3 - "$@" > "$data" <<'PY'
import json, sys
rows = []
for path in sys.argv[1:]:
    r = json.load(open(path))
    w = r["workload"]
    x = w["rate"] if w["rate"] > 0 else w["concurrency"]
    rows.append((x, r["output_tokens_per_s"], r["ttft_ms"]["p50"], r["ttft_ms"]["p99"],
                 r["inter_token_ms"]["p50"], r["inter_token_ms"]["p99"], w["rate"] > 0))
rows.sort()
print("# load tokens_per_s ttft_p50 ttft_p99 itl_p50 itl_p99")
for row in rows:
    print(" ".join(str(v) for v in row[:6]))
print("# xlabel", "sessions per second (open loop)" if rows and rows[0][6] else "concurrent users")
PY
xlabel="$(sed -n 's/^# xlabel //p' "$data")"
gnuplot <<GP
set terminal pngcairo size 1200,450 font "sans,10"
set output "$out"
set multiplot layout 1,2
set grid
set key top left
set xlabel "$xlabel"
set ylabel "output tokens/s"
plot "$data" using 1:2 with linespoints lw 2 pt 7 title "output tokens/s"
set ylabel "ms"
set logscale y
plot "$data" using 1:3 with linespoints lw 2 pt 7 title "TTFT p50", \
     "" using 1:4 with linespoints lw 2 pt 5 title "TTFT p99", \
     "" using 1:5 with linespoints lw 2 pt 9 title "inter-token p50", \
     "" using 1:6 with linespoints lw 2 pt 11 title "inter-token p99"
unset multiplot
GP
echo "wrote $out"
