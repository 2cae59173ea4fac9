#!/usr/bin/env bash
# The README's `attnviz heads` summary figures and tables: all-MiniLM-L6-v2 on 128 tokens
# (tests/data/minilm_attn_128.npy) and a synthetic causal model of 8 layers × 8 heads × 2048
# tokens whose heads carry one planted kind each (`attnviz synth --pattern kinds`).
# Writes docs/heads-minilm.png and docs/heads-synth.png and prints the first lines of each
# table (what the README quotes). Build first: cargo build --release.
#
#   tools/heads_figures.sh            # ATTNVIZ=path/to/attnviz to use another binary
set -euo pipefail
cd "$(dirname "$0")/.."
attnviz=${ATTNVIZ:-${CARGO_TARGET_DIR:-target}/release/attnviz}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$attnviz" heads tests/data/minilm_attn_128.npy \
    --figure docs/heads-minilm.png --title "all-MiniLM-L6-v2, 128 tokens" > "$tmp/minilm.txt"
echo '$ attnviz heads tests/data/minilm_attn_128.npy'
head -n 9 "$tmp/minilm.txt"

# 512 MiB of f16, written to a temporary folder and removed after
"$attnviz" synth --pattern kinds --seq 2048 --layers 8 --heads 8 --causal --seed 1 --quiet \
    -o "$tmp/kinds.npy"
"$attnviz" heads "$tmp/kinds.npy" --causal \
    --figure docs/heads-synth.png \
    --title "attnviz synth --pattern kinds: 8 × 8 heads, 2048 tokens, causal" > "$tmp/synth.txt"
echo
echo '$ attnviz synth --pattern kinds --seq 2048 --layers 8 --heads 8 --causal --seed 1 -o kinds.npy'
echo '$ attnviz heads kinds.npy --causal'
head -n 9 "$tmp/synth.txt"
echo
echo "pattern counts (synthetic):"
tail -n +2 "$tmp/synth.txt" | awk '{print $NF}' | sort | uniq -c
