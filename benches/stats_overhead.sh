#!/usr/bin/env bash
# The cost of `render --stats-json` (issue 17 asks for at most 10%): `attnviz render` of the same
# input with and without it, alternating, N runs each, wall-clock seconds of each run and the
# ratio of the medians. The input is the 1 GiB 8 × 8 grid (synthetic, f32, 2048 tokens), written
# once to $GRID.
#
#   benches/stats_overhead.sh [N]      # ATTNVIZ=path/to/attnviz, GRID=/tmp/grid.npy
set -euo pipefail
cd "$(dirname "$0")/.."
attnviz=${ATTNVIZ:-${CARGO_TARGET_DIR:-target}/release/attnviz}
grid=${GRID:-/tmp/grid.npy}
n=${1:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
if [ ! -f "$grid" ]; then
    "$attnviz" synth --seq 2048 --layers 8 --heads 8 --dtype f32 --seed 1 --quiet -o "$grid"
fi
# one untimed run of each: the page cache and the shader cache warm
"$attnviz" render "$grid" -o "$out/a.png" --quiet 2>/dev/null
"$attnviz" render "$grid" -o "$out/b.png" --stats-json "$out/s.json" --quiet 2>/dev/null
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$attnviz" "$@" --quiet 2>/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
plain=()
stats=()
for _ in $(seq "$n"); do
    plain+=("$(seconds render "$grid" -o "$out/a.png")")
    stats+=("$(seconds render "$grid" -o "$out/b.png" --stats-json "$out/s.json")")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
mp=$(median "${plain[@]}")
ms=$(median "${stats[@]}")
echo "render:               ${plain[*]} s (median $mp)"
echo "render --stats-json:  ${stats[*]} s (median $ms)"
echo "ratio of medians: $(echo "scale=2; $ms / $mp" | bc)"
