#!/usr/bin/env bash
# The one script to run when a task is lent a GPU machine (device time is short: build, test
# and measure in one go, each step's output kept, the most wanted first). Writes into
# ${OUT:-./device-out}:
#   info.txt                       the commit, the GPU, the driver, the adapter wgpu picked
#   build.log, test.log            cargo build / cargo test --release (or the packed executables)
#   bench.txt, bench.json          attnviz bench (every scenario)
#   coop.txt, coop.json            attnviz bench --only coop: wgpu's experimental cooperative
#                                  matrices (16 × 16 × 16, f16 into f32: tensor cores), checked
#                                  against the exact product, then their rate beside the f32
#                                  FMA probe's; its own step, so a driver fault there costs
#                                  nothing else
#   timings.txt                    fresh `render --timings --gpu-times` processes of the 1 GiB
#                                  grid and of a 16384-token Q/K head (plain and causal), twice
#                                  each: where a fresh process's wall-clock time goes on the host
#                                  (start-up, shaders and pipelines, reads, waits, read-back,
#                                  PNG) beside the device's time per pass (issue 15's 1.25×);
#                                  then bench --only qk-long and qk-model with --timings: what
#                                  an in-process render spends besides the kernels
#   backends.txt                   tools/sweep_backends.py: random inputs and options drawn on
#                                  the GPU and by the CPU renderer, compared (failing cases'
#                                  inputs in backends-failed/)
#   numpy.txt, matplotlib.txt      benches/compare_numpy_qk.py, benches/compare_matplotlib.py
#   sweep-<i>.txt, sweep-<i>.json  bench --only qk-long,qk-model with the i-th of $SWEEP's
#                                  ';'-separated argument sets (default: the Q/K budgets around
#                                  the adapter's defaults: --split-workgroups, 0 being one
#                                  window of keys per dispatch, --state-mib, --row-vec4s, 0
#                                  being the tiled kernel)
#   store.txt, store.json          bench --only qk-short --store-keys 0: a whole model of short
#                                  heads from Q and K in one pass, against bench.txt's qk-short
#                                  (stored probabilities, the default: Gpu::qk_store_keys)
#   pooled.txt, pooled.json        bench --only stats-grid --pool-with-profiles
#                                  --pattern-slice-rows 0: the grid's statistics with the profile
#                                  kernel pooling from its own loads (whole chunks a walk), against
#                                  bench.txt's stats-grid (the pool pass, then the profile kernel
#                                  in slices of 64 rows: the defaults)
#   unsliced.txt, unsliced.json    bench --only stats-grid --pattern-slice-rows 0: the profile
#                                  kernel walking whole chunks (128 invocations for 2048 keys),
#                                  against the default slices (Gpu::pattern_slice_rows)
#   long.txt                       render --q of a 131072-token head, with and without --causal,
#                                  then once more each with --gpu-times (the device's time per pass)
#   stats.txt                      benches/stats_overhead.sh 3: render with and without
#                                  --stats-json (issue 17's 10%), the grid and a 32k Q/K head; then
#                                  each of the four once more with --gpu-times
# Where the machine has no cargo (a CUDA image), tools/device_pack.sh builds here first and this
# script unpacks .dev/bins.tar.xz and runs the test executables one by one, from a link at the
# path they were built in (.dev/built_at); the window tests (viewer) need xvfb-run and are
# skipped, with a line in test.log, where it is missing.
# QUICK=1 passes --quick to every bench (a smoke test of this script, not a measurement);
# SKIP_TESTS=1 skips the tests; SKIP="timings backends numpy matplotlib long stats" skips those steps. The exit status
# is the first failing step's.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-./device-out}
mkdir -p "$out"
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
sweep=${SWEEP:---split-workgroups 0;--split-workgroups 1024;--split-workgroups 16384;--state-mib 64;--row-vec4s 0;--row-vec4s 16;--row-vec4s 64}
status=0
wanted() { [[ " ${SKIP:-} " != *" $1 "* ]] && [ -z "${QUICK_ONLY:-}" ]; }
step() {
    local name=$1 limit=$2
    shift 2
    local t=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "$name: rc $rc, $((SECONDS - t)) s" | tee -a "$out/steps.txt"
    [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
    return 0
}
: >"$out/steps.txt"
bin=${CARGO_TARGET_DIR:-target}/release/attnviz
if command -v cargo >/dev/null; then
    step build 1200 bash -c "cargo build --release >'$out/build.log' 2>&1"
    tests=(cargo test --release)
else
    # The packed build: the executables, and the checkout path they were built in.
    python3 -c "import tarfile; tarfile.open('.dev/bins.tar.xz').extractall('.dev/bin')" || exit 1
    mkdir -p target/release
    cp .dev/bin/attnviz "$bin"
    built_at=$(cat .dev/built_at)
    if [ "$(cd "$built_at" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
        [ -e "$built_at" ] && { echo "$built_at exists and is not this tree" >&2; exit 1; }
        mkdir -p "$(dirname "$built_at")" && ln -s "$(pwd -P)" "$built_at"
    fi
    echo "packed build of $(cat .dev/commit 2>/dev/null)" >"$out/build.log"
    tests=(bash -c '
        rc=0
        for t in .dev/bin/tests/*; do
            case $(basename "$t") in
            viewer-*) command -v xvfb-run >/dev/null ||
                { echo "== $t: skipped (no xvfb-run)"; continue; } ;;
            esac
            echo "== $t"
            "$t" || rc=1
        done
        exit $rc')
fi
{
    cat .dev/commit 2>/dev/null || git log -1 --format='commit %H %cd' 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm \
        --format=csv,noheader 2>/dev/null
    "$bin" bench --quick --only qk-long 2>&1 | grep -i "adapter\|row kernel" | head -5
} >"$out/info.txt"
cat "$out/info.txt"
step bench 300 bash -c "'$bin' bench ${quick[*]} --json '$out/bench.json' >'$out/bench.txt' 2>&1"
step coop 120 bash -c "'$bin' bench --only coop --json '$out/coop.json' >'$out/coop.txt' 2>&1"
i=0
IFS=';' read -ra sets <<<"$sweep"
for set in "${sets[@]}"; do
    i=$((i + 1))
    step "sweep $i ($set)" 200 bash -c "'$bin' bench ${quick[*]} --only qk-long,qk-model $set \
        --json '$out/sweep-$i.json' >'$out/sweep-$i.txt' 2>&1"
done
# qk-short (a whole model of 256-token heads, one key a pooled column) in one pass, against the
# default (stored probabilities) in bench.txt: is Gpu::qk_store_keys right on this device?
step store 200 bash -c "'$bin' bench ${quick[*]} --only qk-short --store-keys 0 \
    --json '$out/store.json' >'$out/store.txt' 2>&1"
# The grid's statistics pooled by the profile kernel from its own loads (it walks whole
# chunks), and the profile kernel walking whole chunks, against the defaults (the pool pass,
# then the profile kernel in slices of rows) in bench.txt's stats-grid: should
# Gpu::pool_with_profiles be on, and Gpu::pattern_slice_rows what it is, on this device?
step pooled 200 bash -c "'$bin' bench ${quick[*]} --only stats-grid --pool-with-profiles \
    --pattern-slice-rows 0 --json '$out/pooled.json' >'$out/pooled.txt' 2>&1"
step unsliced 200 bash -c "'$bin' bench ${quick[*]} --only stats-grid --pattern-slice-rows 0 \
    --json '$out/unsliced.json' >'$out/unsliced.txt' 2>&1"
if wanted timings; then
    step timings 200 bash -c "
        grid=\${XDG_CACHE_HOME:-\$HOME/.cache}/attnviz/bench/grid-8x8x2048-f32.npy
        if [ ! -f \"\$grid\" ]; then
            grid=/tmp/grid.npy
            [ -f \$grid ] || '$bin' synth --seq 2048 --layers 8 --heads 8 --dtype f32 --seed 1 \
                -o \$grid >/dev/null 2>&1
        fi
        '$bin' synth-qk --seq 16384 --dim 64 --dtype f32 --seed 1 \
            -o /tmp/qk-16k.safetensors >/dev/null 2>&1
        qk='--q /tmp/qk-16k.safetensors --cell 1024'
        for input in \"\$grid\" \"\$qk\" \"\$qk --causal\"; do
            for r in 1 2; do
                echo \"== render \$input (a fresh process, run \$r)\"
                '$bin' render --quiet \$input --timings --gpu-times -o /tmp/t.png
            done
        done >'$out/timings.txt' 2>&1
        for s in qk-long qk-model; do
            echo \"== bench --only \$s --timings (in process: every run summed)\"
            '$bin' bench ${quick[*]} --only \$s --timings
        done >>'$out/timings.txt' 2>&1"
fi
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    step test 600 bash -c '"$@" >"'"$out"'/test.log" 2>&1' _ "${tests[@]}"
    grep -h "^test result\|FAILED\|panicked\|skipped" "$out/test.log" | sort | uniq -c | sort -rn | head -20
fi
if wanted backends; then
    # (random inputs and options on the GPU and the CPU renderer: where this driver rounds
    # differently from lavapipe, the failing cases are kept)
    step backends 240 bash -c "python3 tools/sweep_backends.py --attnviz '$bin' --runs 60 \
        --seed 1 --keep '$out/backends-failed' >'$out/backends.txt' 2>&1"
fi
if wanted numpy; then
    step numpy 300 bash -c "python3 benches/compare_numpy_qk.py --attnviz '$bin' --runs 3 \
        --np-runs 2 >'$out/numpy.txt' 2>&1"
fi
if wanted matplotlib; then
    step matplotlib 300 bash -c "'$bin' synth --seq 2048 --layers 8 --heads 8 --dtype f32 \
        --seed 1 -o /tmp/grid.npy >/dev/null && python3 benches/compare_matplotlib.py \
        /tmp/grid.npy --attnviz '$bin' --runs 3 >'$out/matplotlib.txt' 2>&1"
fi
if wanted long; then
    step long 300 bash -c "
        '$bin' synth-qk --seq 131072 --dim 64 --dtype f32 --seed 1 -o /tmp/qk-131k.safetensors
        for m in '' --causal; do
            for r in 1 2 3; do
                TIMEFORMAT=\"131072 tokens \$m: %R s wall\"
                time '$bin' render --quiet --q /tmp/qk-131k.safetensors --cell 1024 \$m -o /tmp/l.png
            done
            '$bin' render --quiet --q /tmp/qk-131k.safetensors --cell 1024 \$m --gpu-times \
                -o /tmp/l.png
        done >'$out/long.txt' 2>&1"
fi
if wanted stats; then
    step stats 300 bash -c "ATTNVIZ='$bin' GRID=/tmp/grid.npy bash benches/stats_overhead.sh 3 \
        >'$out/stats.txt' 2>&1
        qk='--q /tmp/attnviz-qk-bench/qk-32768-d64-f32.safetensors --cell 1024 --causal'
        for input in /tmp/grid.npy \"\$qk\"; do
            for s in '' '--stats-json /tmp/s.json'; do
                echo \"render \$input \$s:\"
                '$bin' render --quiet \$input \$s --gpu-times -o /tmp/t.png
            done
        done >>'$out/stats.txt' 2>&1"
fi
echo "== summary"
cat "$out/steps.txt"
grep -h "fma\|qk-\|export-grid\|export-model\|stats-grid" "$out/bench.txt" "$out/pooled.txt" \
    "$out/unsliced.txt" 2>/dev/null
grep -h "^row kernel\|^qk-" "$out"/sweep-*.txt 2>/dev/null
tail -n 12 "$out/numpy.txt" "$out/matplotlib.txt" "$out/long.txt" "$out/stats.txt" 2>/dev/null
exit $status
