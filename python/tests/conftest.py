"""Shared helpers: the CLI binary the package is compared with, and a PNG reader (no Pillow)."""

import os
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session", autouse=True)
def gpu():
    """A missing adapter fails every test, as it does the Rust tests: the package would otherwise
    fall back to the CPU with a warning and the tests would pass without a GPU. Only an explicit
    ATTNVIZ_ALLOW_NO_GPU=1 (never set by ./test or CI) lets them run on the fallback."""
    if os.environ.get("ATTNVIZ_ALLOW_NO_GPU") == "1":
        return
    import attnviz

    try:
        attnviz.render(np.zeros((2, 2), np.float32), backend="gpu")
    except Exception as e:  # the adapter's error, whatever its type
        pytest.fail("{}\nInstall a Vulkan driver (Mesa's lavapipe without a GPU): apt-get install -y "
                    "mesa-vulkan-drivers libvulkan1, or run ./test, which installs it. "
                    "ATTNVIZ_ALLOW_NO_GPU=1 runs the tests on the CPU fallback instead.".format(e),
                    pytrace=False)


@pytest.fixture(scope="session")
def cli():
    """The release CLI (`cargo build --release`, in $CARGO_TARGET_DIR when set), or
    $ATTNVIZ_CLI. Missing is a failure: these tests exist to compare the package with it."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = Path(os.environ.get("ATTNVIZ_CLI", target / "release" / "attnviz"))
    if not path.is_file():
        pytest.fail("{} not found: run `cargo build --release` first (or set ATTNVIZ_CLI)".format(path))
    return path


def run_cli(cli, *args):
    """Runs the CLI; returns (exit code, stderr)."""
    p = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stderr


def read_png(data):
    """Decodes an 8-bit RGBA, non-interlaced PNG (what attnviz writes) to an (H, W, 4) array."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = header
    assert (depth, color, interlace) == (8, 6, 0), "expected 8-bit RGBA, not interlaced"
    raw = zlib.decompress(idat)
    stride = width * 4
    out = bytearray(height * stride)
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        cur = bytearray(line)
        if kind == 1:
            for x in range(4, stride):
                cur[x] = (cur[x] + cur[x - 4]) & 255
        elif kind == 2:
            cur = bytearray((v + p) & 255 for v, p in zip(line, prev))
        elif kind == 3:
            for x in range(stride):
                left = cur[x - 4] if x >= 4 else 0
                cur[x] = (cur[x] + ((left + prev[x]) >> 1)) & 255
        elif kind == 4:
            for x in range(stride):
                a = cur[x - 4] if x >= 4 else 0
                b = prev[x]
                c = prev[x - 4] if x >= 4 else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (cur[x] + pred) & 255
        else:
            assert kind == 0, "bad PNG filter type {}".format(kind)
        out[y * stride:(y + 1) * stride] = cur
        prev = cur
    return np.frombuffer(bytes(out), np.uint8).reshape(height, width, 4)


def read_png_file(path):
    return read_png(Path(path).read_bytes())
