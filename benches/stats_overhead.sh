#!/usr/bin/env bash
# The cost of `render --stats-json` (issue 17 asks for at most 10%): `attnviz render` of the same
# input with and without it, alternating, N runs each, wall-clock seconds of each run and the
# ratio of the medians; then the same for CPU seconds (user + system), which other processes on
# a shared machine disturb less (on a software rasterizer the device's work is CPU time too).
# The inputs are the two the issue names: the 1 GiB 8 × 8 grid (synthetic, f32, 2048 tokens),
# written once to $GRID, and one causal 32768-token head from Q and K (d = 64, f32, pooled into
# 1024 px; the input benches/compare_numpy_qk.py uses), written once to $QK; then a whole model
# at short context, drawn at its own size, where pooling is per pixel rather than per entry:
# 32 layers × 32 heads of 256 tokens stored (f16, $MODEL) and from Q and K (8 KV heads, d = 64,
# $MODEL_QK).
#
#   benches/stats_overhead.sh [N]      # ATTNVIZ=path/to/attnviz, GRID=/tmp/grid.npy,
#                                      # QK=/tmp/attnviz-qk-bench/qk-32768-d64-f32.safetensors,
#                                      # MODEL=/tmp/m32.npy, MODEL_QK=/tmp/c32.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
attnviz=${ATTNVIZ:-${CARGO_TARGET_DIR:-target}/release/attnviz}
grid=${GRID:-/tmp/grid.npy}
n=${1:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
qk=${QK:-/tmp/attnviz-qk-bench/qk-32768-d64-f32.safetensors}
model=${MODEL:-/tmp/m32.npy}
model_qk=${MODEL_QK:-/tmp/c32.safetensors}
if [ ! -f "$grid" ]; then
    "$attnviz" synth --seq 2048 --layers 8 --heads 8 --dtype f32 --seed 1 --quiet -o "$grid"
fi
if [ ! -f "$qk" ]; then
    mkdir -p "$(dirname "$qk")"
    "$attnviz" synth-qk --seq 32768 --dim 64 --dtype f32 --seed 1 -o "$qk" >/dev/null
fi
if [ ! -f "$model" ]; then
    "$attnviz" synth --seq 256 --layers 32 --heads 32 --seed 1 --quiet -o "$model"
fi
if [ ! -f "$model_qk" ]; then
    "$attnviz" synth-qk --seq 256 --layers 32 --heads 32 --kv-heads 8 --seed 1 -o "$model_qk" >/dev/null
fi
# "wall user system" seconds of one run
seconds() {
    local TIMEFORMAT='%R %U %S'
    { time "$attnviz" "$@" --quiet >/dev/null 2>&1; } 2>&1
}
# (awk, not bc: a GPU machine's image may lack bc)
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
report() {
    local what=$1
    shift
    local -n a=$1 b=$2
    local ma mb
    ma=$(median "${a[@]}")
    mb=$(median "${b[@]}")
    echo "  $what render:               ${a[*]} s (median $ma)"
    echo "  $what render --stats-json:  ${b[*]} s (median $mb)"
    echo "  $what ratio of medians: $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", b / a }')"
}
# measure NAME RENDER-ARGS...: one untimed run of each (the page cache and the shader cache
# warm), then N of each, alternating
measure() {
    local name=$1
    shift
    local plain=() stats=() plain_cpu=() stats_cpu=() w u s
    "$attnviz" render "$@" -o "$out/a.png" --quiet 2>/dev/null
    "$attnviz" render "$@" -o "$out/b.png" --stats-json "$out/s.json" --quiet 2>/dev/null
    for _ in $(seq "$n"); do
        read -r w u s < <(seconds render "$@" -o "$out/a.png")
        plain+=("$w")
        plain_cpu+=("$(add "$u" "$s")")
        read -r w u s < <(seconds render "$@" -o "$out/b.png" --stats-json "$out/s.json")
        stats+=("$w")
        stats_cpu+=("$(add "$u" "$s")")
    done
    echo "$name"
    report wall plain stats
    report cpu plain_cpu stats_cpu
}
measure "1 GiB 8x8 grid ($grid)" "$grid"
measure "32k causal head from Q/K ($qk, 1024 px)" --q "$qk" --cell 1024 --causal
measure "32 x 32 model of 256 tokens ($model)" "$model"
measure "the same model's Q and K ($model_qk)" --q "$model_qk"
