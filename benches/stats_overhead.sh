#!/usr/bin/env bash
# The cost of `render --stats-json` (issue 17 asks for at most 10%): `attnviz render` of the same
# input with and without it, alternating, N runs each, wall-clock seconds of each run and the
# ratio of the medians; then the same for CPU seconds (user + system), which other processes on
# a shared machine disturb less (on a software rasterizer the device's work is CPU time too).
# The input is the 1 GiB 8 × 8 grid (synthetic, f32, 2048 tokens), written once to $GRID.
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
# "wall user system" seconds of one run
seconds() {
    local TIMEFORMAT='%R %U %S'
    { time "$attnviz" "$@" --quiet >/dev/null 2>&1; } 2>&1
}
plain=()
stats=()
plain_cpu=()
stats_cpu=()
for _ in $(seq "$n"); do
    read -r w u s < <(seconds render "$grid" -o "$out/a.png")
    plain+=("$w")
    plain_cpu+=("$(echo "$u + $s" | bc)")
    read -r w u s < <(seconds render "$grid" -o "$out/b.png" --stats-json "$out/s.json")
    stats+=("$w")
    stats_cpu+=("$(echo "$u + $s" | bc)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
report() {
    local what=$1
    shift
    local -n a=$1 b=$2
    local ma mb
    ma=$(median "${a[@]}")
    mb=$(median "${b[@]}")
    echo "$what render:               ${a[*]} s (median $ma)"
    echo "$what render --stats-json:  ${b[*]} s (median $mb)"
    echo "$what ratio of medians: $(echo "scale=2; $mb / $ma" | bc)"
}
report wall plain stats
report cpu plain_cpu stats_cpu
