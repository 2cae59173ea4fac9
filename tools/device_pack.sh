#!/usr/bin/env bash
# Readies this checkout for tools/device_check.sh on a lent GPU machine, with no device time
# spent: that machine's image has no Rust toolchain, may lack Vulkan's loader, and reaches no
# network. So, here:
# - .dev/: this checkout's release build packed, the attnviz binary and every test executable
#   of `cargo test --release`, stripped, in one archive, .dev/bins.tar.xz (about 10 MB against
#   120 MB of stripped executables; a lent machine takes at most 64 MiB of tree), with
#   .dev/built_at, the checkout's path: the test executables carry it (CARGO_MANIFEST_DIR for
#   tests/data, CARGO_BIN_EXE_attnviz for the CLI tests), so device_check.sh links that path to
#   its tree there; and .dev/commit;
# - .gl/: the Debian packages of Vulkan's (and GL's) loader, which device_check.sh unpacks
#   there where `ldconfig` finds no libvulkan (kept when already downloaded).
# Both are ignored through .git/info/exclude, never committed, and travel with the device
# tool's `carry: [".dev", ".gl"]`. Prints the call to make.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for p in /.dev/ /.gl/; do
    grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"
done
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    mkdir -p .gl /tmp/amd64/partial
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update >/dev/null
    (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
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
ls -l .dev/bins.tar.xz .gl
echo 'then: run  command: bash tools/device_check.sh  carry: [".dev", ".gl"]  timeout_s: 420'
