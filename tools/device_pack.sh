#!/usr/bin/env bash
# Packs this checkout's release build for a GPU machine with no Rust toolchain (a CUDA image),
# for tools/device_check.sh to run there: the attnviz binary and every test executable of
# `cargo test --release`, stripped, in one archive, .dev/bins.tar.xz (10 MB against 120 MB of
# stripped executables; a lent machine takes at most 64 MiB of tree), and .dev/built_at, the
# checkout's path: the test executables carry it (CARGO_MANIFEST_DIR for tests/data,
# CARGO_BIN_EXE_attnviz for the CLI tests), so device_check.sh links that path to its tree.
# .dev/ is not committed (add /.dev/ to .git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .dev/bin .dev/bins.tar.xz
mkdir -p .dev/bin/tests
cargo build --release
strip -o .dev/bin/attnviz target/release/attnviz
cargo test --release --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    j = json.loads(line)
    if j.get("reason") == "compiler-artifact" and j.get("executable") and j["profile"]["test"]:
        print(j["executable"])' |
    while read -r exe; do
        strip -o ".dev/bin/tests/$(basename "$exe")" "$exe"
    done
pwd >.dev/built_at
git describe --always --dirty --abbrev=12 >.dev/commit
tar -C .dev/bin -cf - attnviz tests | xz -9 -T0 >.dev/bins.tar.xz
rm -rf .dev/bin
ls -l .dev/bins.tar.xz
