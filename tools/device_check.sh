#!/usr/bin/env bash
# The one script to run when a task is lent a GPU machine. Device time is short (15 minutes a
# session, the machine's start included, at most 10 a command), so it runs against a deadline:
# the steps most wanted first, each given at most what is left of DEADLINE seconds (default
# 360), and a step that cannot have its minimum is skipped with a line saying so. A first run
# with the device tool's timeout_s at 420 then leaves time for a second, shorter one.
#
# Here, first (no device time): tools/device_pack.sh packs the release build and its test
# executables (.dev/, for a machine with no Rust) and Vulkan's loader (.gl/). Then one call:
#   run  command: bash tools/device_check.sh   carry: [".dev", ".gl"]   timeout_s: 420
# A second run, at once while the machine is warm (30 s), e.g. DEADLINE=200 SKIP="bench tests".
#
# Everything goes to $OUT, the folder the device tool brings back, as at most 8 files (the
# tool's limit), each written while or as its step ends, so a run cut short returns what it did:
#   summary.txt    the commit, the GPU, the adapter wgpu picked, each step's status and time, and
#                  the figures the issues ask for, grepped from the others (rewritten after
#                  every step)
#   bench.txt      attnviz bench: first what issues 15 and 17 measure (qk-long, qk-model,
#                  export-grid, export-grid-cli, stats-grid), then the other scenarios
#   bench.json     the first of those two runs' JSON
#   tests.txt      cargo test --release, or the packed test executables one by one (the window
#                  tests skipped, with a line, where xvfb-run is missing)
#   compare.txt    benches/compare_numpy_qk.py (16k and 32k, both masks), benches/stats_overhead.sh
#                  (render with and without --stats-json), benches/compare_matplotlib.py
#   tuning.txt     the adapter's knobs around their GPU defaults, the bench lines of each: the
#                  statistics' profile kernel unsliced and pooling from its own loads
#                  (Gpu::pattern_slice_rows, Gpu::pool_with_profiles), qk-short in one pass
#                  (Gpu::qk_store_keys), and $SWEEP's Q/K budgets (--split-workgroups,
#                  --state-mib, --row-vec4s)
#   timings.txt    fresh `render --timings --gpu-times` processes (the grid, a 16k head plain and
#                  causal), then a 131072-token head with and without the mask
#   coop.txt       bench --only coop: wgpu's experimental cooperative matrices checked and timed
#                  (last, so a driver fault there costs nothing else)
#
# On the lent machine: Vulkan's loader is unpacked from .gl/ where the image has none, and
# NVIDIA's driver named (VK_DRIVER_FILES) where the loader would not find it. An adapter that is
# not a GPU (a software rasterizer) stops the run at once: its figures would say nothing.
# Where there is cargo, the release build is made first, on the clock.
#
# QUICK=1 passes --quick to every bench, makes the comparisons small and accepts any adapter (a
# smoke test of this script, lavapipe's too, not a measurement: CI runs it so);
# SKIP="bench tests compare tuning bench2 timings coop" skips those steps; SWEEP is
# ';'-separated bench arguments for tuning; PYTHON an interpreter with numpy and matplotlib.
# The exit status is the first failing step's (124: a step ran out of its time).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
deadline=${DEADLINE:-360}
out=${OUT:-./device-out}
mkdir -p "$out"
# (--quick, or nothing: word-split where used)
qopt=
[ "${QUICK:-0}" = 1 ] && qopt=--quick
sweep=${SWEEP:---split-workgroups 0;--split-workgroups 16384;--state-mib 64;--row-vec4s 0;--row-vec4s 64}
status=0
# (the device image's python3 holds numpy and matplotlib; elsewhere PYTHON may name one that does)
python=${PYTHON:-python3}
steps=$(mktemp)
info=$(mktemp)
trap 'rm -f "$steps" "$info"' EXIT
left() { echo $((deadline - (SECONDS - start))); }
wanted() { [[ " ${SKIP:-} " != *" $1 "* ]]; }

# summary.txt: the machine, each step, and the lines the README's GPU table quotes.
summarize() {
    {
        cat "$info"
        echo "== steps (deadline ${deadline} s)"
        cat "$steps"
        echo "== figures"
        grep -h "^fma\|^memcpy\|^| qk-\|^| export-grid\|^| stats-grid\|^| export-model\|^qk-\|^export-grid\|^stats-grid\|^row kernel" \
            "$out/bench.txt" 2>/dev/null
        grep -hE "^ +[0-9]+ +(off|causal) |ratio|^(matplotlib|attnviz|input): |^[0-9].*\(" "$out/compare.txt" 2>/dev/null |
            grep -v "^ratio = " | head -40
        grep -h "^== \|stats-grid\|^| qk-" "$out/tuning.txt" 2>/dev/null
        grep -h "tokens" "$out/timings.txt" 2>/dev/null
        grep -h "TFLOP\|cooperative" "$out/coop.txt" 2>/dev/null | head -5
        grep -h "^test result\|FAILED\|panicked\|skipped" "$out/tests.txt" 2>/dev/null |
            sort | uniq -c | sort -rn | head -12
    } >"$out/summary.txt"
}

# step NAME MIN CAP COMMAND...: runs COMMAND with at most CAP seconds and never past the
# deadline; skipped where fewer than MIN seconds are left, or where SKIP names it.
step() {
    local name=$1 min=$2 cap=$3
    shift 3
    if ! wanted "$name"; then
        echo "$name: skipped (SKIP)" >>"$steps"
        return 0
    fi
    local budget
    budget=$(left)
    if [ "$budget" -lt "$min" ]; then
        echo "$name: skipped, ${budget} s left of the deadline (it needs ${min})" | tee -a "$steps"
        return 0
    fi
    [ "$budget" -gt "$cap" ] && budget=$cap
    local t=$SECONDS
    timeout -k 5 "$budget" "$@"
    local rc=$?
    echo "$name: rc $rc, $((SECONDS - t)) s of at most $budget" | tee -a "$steps"
    [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
    summarize
    return 0
}

# -- the machine: loader, driver, build
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan\.so\.1' && [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -z "${VK_DRIVER_FILES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1 &&
    [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
bin=${CARGO_TARGET_DIR:-target}/release/attnviz
if command -v cargo >/dev/null; then
    step build 60 300 bash -c "cargo build --release >'$out/tests.txt' 2>&1"
    tests=(cargo test --release)
else
    # The packed build: the executables, and the checkout path they were built in.
    python3 -c "import tarfile; tarfile.open('.dev/bins.tar.xz').extractall('.dev/bin')" || {
        echo "no cargo and no packed build (.dev/bins.tar.xz): run tools/device_pack.sh here first" >&2
        exit 2
    }
    mkdir -p "$(dirname "$bin")"
    cp .dev/bin/attnviz "$bin"
    built_at=$(cat .dev/built_at)
    if [ "$(cd "$built_at" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
        [ -e "$built_at" ] && { echo "$built_at exists and is not this tree" >&2; exit 2; }
        mkdir -p "$(dirname "$built_at")" && ln -s "$(pwd -P)" "$built_at"
    fi
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
    echo "== $(cat .dev/commit 2>/dev/null || git log -1 --format='%h %cd' 2>/dev/null), $(date -u '+%F %H:%M UTC')"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv,noheader 2>/dev/null
    nproc | sed 's/$/ host cores/'
    timeout 60 "$bin" info --backend gpu tests/data/minilm_attn_128.npy 2>&1 | grep -i "adapter\|error"
} >"$info"
cat "$info"
# (QUICK=1 runs on any adapter: it tests this script, not a device)
if ! grep -q "^adapter: " "$info" || { grep -q "^adapter: .*, Cpu," "$info" && [ -z "$qopt" ]; }; then
    echo "no GPU adapter (above): nothing here would measure a GPU" | tee -a "$steps"
    summarize
    exit 3
fi

# -- what the issues ask for first
step bench 60 180 bash -c "'$bin' bench $qopt --only qk-long,qk-model,export-grid,export-grid-cli,stats-grid \
    --json '$out/bench.json' >'$out/bench.txt' 2>&1"
step tests 60 180 bash -c '"$@" >>"'"$out"'/tests.txt" 2>&1' _ "${tests[@]}"
# (QUICK: small heads, and no stats_overhead.sh, whose inputs are fixed at their full size)
seqs=16384,32768 grid=/tmp/grid.npy grid_seq=2048 qseq=16384 long=131072
[ "${QUICK:-0}" = 1 ] && seqs=2048 grid=/tmp/grid-quick.npy grid_seq=256 qseq=2048 long=4096
# (the steps of several commands go on past a failing one, and fail at the end: `track`)
track="set -o pipefail; rc=0; trap 'rc=1' ERR;"
step compare 60 150 bash -c "$track
    echo '== benches/compare_numpy_qk.py'
    '$python' benches/compare_numpy_qk.py --attnviz '$bin' --seqs $seqs --runs 3 --np-runs 1
    if [ -z '$qopt' ]; then
        echo '== benches/stats_overhead.sh 3'
        ATTNVIZ='$bin' GRID='$grid' bash benches/stats_overhead.sh 3
    fi
    echo '== benches/compare_matplotlib.py'
    [ -f '$grid' ] || '$bin' synth --seq $grid_seq --layers 8 --heads 8 --dtype f32 --seed 1 \
        --quiet -o '$grid'
    '$python' benches/compare_matplotlib.py '$grid' --attnviz '$bin' --runs 3
    exit \$rc
" >"$out/compare.txt" 2>&1

# -- the knobs, around the GPU defaults
tune() {
    set -o pipefail
    local rc=0
    trap 'rc=1' ERR
    echo "== stats-grid --pattern-slice-rows 0 (whole chunks a walk) and 256, then pooled by the profile kernel"
    local a set
    for a in "--pattern-slice-rows 0" "--pattern-slice-rows 256" "--pool-with-profiles --pattern-slice-rows 0"; do
        echo "-- $a"
        "$bin" bench $qopt --only stats-grid $a 2>&1 | grep "^| stats\|^stats-grid"
    done
    echo "== qk-short --store-keys 0 (a whole model of short heads in one pass)"
    "$bin" bench $qopt --only qk-short --store-keys 0 2>&1 | grep "^| qk"
    IFS=';' read -ra sets <<<"$sweep"
    for set in "${sets[@]}"; do
        echo "== qk-long,qk-model $set"
        "$bin" bench $qopt --only qk-long,qk-model $set 2>&1 | grep "^| qk\|^row kernel\|^qk-"
    done
    return $rc
}
export -f tune
export bin sweep qopt
step tuning 45 90 bash -c tune >"$out/tuning.txt" 2>&1
step bench2 30 90 bash -c "'$bin' bench $qopt --only export-long,export-model,recolor,frame,upload,pool-resident,qk-short \
    >>'$out/bench.txt' 2>&1"
step timings 30 90 bash -c "$track
    [ -f '$grid' ] || '$bin' synth --seq $grid_seq --layers 8 --heads 8 --dtype f32 --seed 1 \
        --quiet -o '$grid'
    '$bin' synth-qk --seq $qseq --dim 64 --dtype f32 --seed 1 -o /tmp/qk-16k.safetensors >/dev/null
    for input in '$grid' '--q /tmp/qk-16k.safetensors --cell 1024' \
        '--q /tmp/qk-16k.safetensors --cell 1024 --causal'; do
        echo \"== render \$input (a fresh process)\"
        '$bin' render --quiet \$input --timings --gpu-times -o /tmp/t.png
    done
    '$bin' synth-qk --seq $long --dim 64 --dtype f32 --seed 1 -o /tmp/qk-long.safetensors >/dev/null
    for m in '' --causal; do
        for r in 1 2; do
            TIMEFORMAT=\"$long tokens \$m: %R s wall\"
            time '$bin' render --quiet --q /tmp/qk-long.safetensors --cell 1024 \$m -o /tmp/l.png
        done
        '$bin' render --quiet --q /tmp/qk-long.safetensors --cell 1024 \$m --gpu-times -o /tmp/l.png
    done
    exit \$rc
" >"$out/timings.txt" 2>&1
step coop 20 60 bash -c "'$bin' bench --only coop >'$out/coop.txt' 2>&1"
summarize
cat "$out/summary.txt"
exit $status
