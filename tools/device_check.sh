#!/usr/bin/env bash
# The one script to run when a task is lent a GPU machine (device time is short: build, test
# and measure in one go, each step's output kept). Writes into ${OUT:-./device-out}:
#   build.log, test.log            cargo build / cargo test --release
#   bench.txt, bench.json          attnviz bench (every scenario)
#   sweep-<N>.txt, sweep-<N>.json  bench --only qk-long,qk-model --row-vec4s N for N in $SWEEP
#                                  (the Q/K row kernel's GPU budget, 32 vec4s, is a guess until
#                                  this sweep has run on a GPU)
#   info.txt                       the adapter, the driver, the commit
# QUICK=1 passes --quick to every bench (a smoke test of this script, not a measurement);
# SKIP_TESTS=1 skips cargo test. The exit status is the first failing step's.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-./device-out}
mkdir -p "$out"
quick=()
[ "${QUICK:-0}" = 1 ] && quick=(--quick)
sweep=${SWEEP:-16 32 64}
status=0
step() {
    local name=$1
    shift
    local t=$SECONDS
    "$@"
    local rc=$?
    echo "$name: rc $rc, $((SECONDS - t)) s" | tee -a "$out/steps.txt"
    [ $rc -ne 0 ] && [ $status -eq 0 ] && status=$rc
    return 0
}
: >"$out/steps.txt"
{
    git log -1 --format='commit %H %cd' 2>/dev/null
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
} >"$out/info.txt"
step build bash -c "cargo build --release >'$out/build.log' 2>&1"
bin=${CARGO_TARGET_DIR:-target}/release/attnviz
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    step test bash -c "cargo test --release >'$out/test.log' 2>&1"
fi
step bench bash -c "'$bin' bench ${quick[*]} --json '$out/bench.json' >'$out/bench.txt' 2>&1"
for n in $sweep; do
    step "sweep $n" bash -c "'$bin' bench ${quick[*]} --only qk-long,qk-model --row-vec4s $n \
        --json '$out/sweep-$n.json' >'$out/sweep-$n.txt' 2>&1"
done
grep -h "^row kernel\|^qk-\|^fma" "$out"/sweep-*.txt 2>/dev/null
exit $status
