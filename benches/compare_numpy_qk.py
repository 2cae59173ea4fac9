#!/usr/bin/env python3
"""Times the numpy code a user would write to draw one attention head from Q and K against
`attnviz render --q` on the same Q and K, prints both times and the ratio, and checks that the
two pooled images agree. Run by hand (see README, "Attention from Q and K"):

    python3 benches/compare_numpy_qk.py                      # N = 16384 and 32768, both masks
    python3 benches/compare_numpy_qk.py --seqs 16384 --runs 3

Inputs: `attnviz synth-qk --seq N --dim 64 --dtype f32` (sink, sparse columns, local window),
written once into --workdir and read by both sides (numpy parses the .safetensors header
itself). The numpy side is what a notebook does, per block of 1024 queries:
`s = q_blk @ k.T * scale` (float32, BLAS on every core), the causal mask as -inf, subtract the
row max, exp, divide by the row sum, reshape and max-pool into (N / cell)² bins; it is timed
from the loaded arrays (loading 8 MiB is negligible). The attnviz side is the whole command a
user runs, process start-up included: `attnviz render --q qk.safetensors --cell C [--causal]`.

Agreement: numpy's pooled image is saved as a (1, 1, C, C) .npy and rendered by the same
binary with the same options (`--cell C`, `--causal` where the head is causal; at C × C a
pooled pixel is one entry, so that render only colours numpy's values); both figures' cells are
then compared pixel by pixel, the cell rectangles read from `--layout-json`. A pixel is "off"
when a channel differs by more than 8 (one step of the 256-entry colormap table is at most a
few units per channel in viridis); at most 0.1% of the cell's pixels may be off. Needs numpy.
"""

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib


def load_safetensors(path):
    import numpy as np

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(t["shape"])
    return out


def numpy_pooled(q, k, cell, causal, block=1024):
    """Max-pooled softmax(q kᵀ / √d) of one head into cell × cell bins."""
    import numpy as np

    n, d = q.shape
    scale = np.float32(1.0 / np.sqrt(d))
    bin_q, bin_k = n // cell, k.shape[0] // cell
    out = np.empty((cell, cell), dtype=np.float32)
    kt = np.ascontiguousarray(k.T)
    for r0 in range(0, n, block):
        s = q[r0 : r0 + block] @ kt
        s *= scale
        if causal:
            rows = np.arange(r0, r0 + s.shape[0])[:, None]
            s[np.arange(k.shape[0])[None, :] > rows] = -np.inf
        s -= s.max(axis=1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=1, keepdims=True)
        pooled = s.reshape(s.shape[0] // bin_q, bin_q, cell, bin_k).max(axis=(1, 3))
        out[r0 // bin_q : r0 // bin_q + pooled.shape[0]] = pooled
    return out


def read_png(path):
    """RGBA or RGB 8-bit, non-interlaced PNG as an (h, w, c) uint8 array."""
    import numpy as np

    with open(path, "rb") as f:
        data = f.read()
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                sys.exit(f"{path}: unsupported PNG (depth {depth}, color {color})")
            c = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(h, 1 + w * c)
    img = np.zeros((h, w * c), dtype=np.int32)
    prev = np.zeros(w * c, dtype=np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            row = line
        elif f == 2:
            row = (line + prev) & 255
        elif f == 1:
            row = line.copy()
            for ch in range(c):
                row[ch::c] = np.cumsum(line[ch::c]) & 255
        else:
            row = np.zeros_like(line)
            for x in range(w * c):
                a = row[x - c] if x >= c else 0
                b = prev[x]
                cc = prev[x - c] if x >= c else 0
                if f == 3:
                    pred = (a + b) >> 1
                else:
                    p = a + b - cc
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
                row[x] = (line[x] + pred) & 255
        img[y] = row
        prev = row
    return img.reshape(h, w, c)


def run(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return time.perf_counter() - t0


def cell_pixels(png, layout):
    img = read_png(png)
    with open(layout) as f:
        c = json.load(f)["cells"][0]
    return img[c["y"] : c["y"] + c["height"], c["x"] : c["x"] + c["width"], :3]


def main():
    import numpy as np

    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--attnviz",
        default=os.path.join(here, "..", "target", "release", "attnviz"),
        help="attnviz binary (default: target/release/attnviz)",
    )
    p.add_argument("--seqs", default="16384,32768", help="head lengths, comma-separated")
    p.add_argument("--cell", type=int, default=1024, help="pooled cell size (px)")
    p.add_argument("--runs", type=int, default=3, help="attnviz runs (median is reported)")
    p.add_argument("--np-runs", type=int, default=3, help="numpy runs (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed attnviz runs first")
    p.add_argument("--masks", default="off,causal", help="off, causal or both (comma-separated)")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "attnviz-qk-bench"))
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)

    print(f"attnviz: {os.path.realpath(args.attnviz)}")
    print(f"{'N':>6} {'mask':>6} {'numpy s':>9} {'attnviz s':>10} {'ratio':>7} {'off px':>8}  runs")
    failed = False
    for n in [int(s) for s in args.seqs.split(",")]:
        qk = os.path.join(args.workdir, f"qk-{n}-d64-f32.safetensors")
        if not os.path.exists(qk):
            run([args.attnviz, "synth-qk", "--seq", str(n), "--dim", "64", "--dtype", "f32",
                 "--seed", "1", "-o", qk])
        t = load_safetensors(qk)
        q, k = t["q"].reshape(-1, t["q"].shape[-1]), t["k"].reshape(-1, t["k"].shape[-1])
        for mask in args.masks.split(","):
            causal = mask == "causal"
            flags = ["--cell", str(args.cell)] + (["--causal"] if causal else [])
            png = os.path.join(args.workdir, "qk.png")
            lay = os.path.join(args.workdir, "qk.json")
            cmd = [args.attnviz, "render", "--quiet", "--q", qk, *flags, "-o", png,
                   "--layout-json", lay]
            for _ in range(args.warmup):  # page cache, pipeline caches
                run(cmd)
            avz = [run(cmd) for _ in range(args.runs)]
            nps = []
            for _ in range(args.np_runs):
                t0 = time.perf_counter()
                pooled = numpy_pooled(q, k, args.cell, causal)
                nps.append(time.perf_counter() - t0)
            npy = os.path.join(args.workdir, "numpy-pooled.npy")
            np.save(npy, pooled.reshape(1, 1, args.cell, args.cell))
            np_png = os.path.join(args.workdir, "numpy.png")
            np_lay = os.path.join(args.workdir, "numpy.json")
            run([args.attnviz, "render", "--quiet", npy, *flags, "-o", np_png,
                 "--layout-json", np_lay])
            a, b = cell_pixels(png, lay), cell_pixels(np_png, np_lay)
            if a.shape != b.shape:
                sys.exit(f"cells differ in size: {a.shape} vs {b.shape}")
            off = int((np.abs(a - b).max(axis=2) > 8).sum())
            frac = off / (a.shape[0] * a.shape[1])
            failed |= frac > 0.001
            t_np, t_avz = statistics.median(nps), statistics.median(avz)
            runs = " ".join(f"{x:.2f}" for x in avz) + " | np " + " ".join(f"{x:.2f}" for x in nps)
            print(f"{n:>6} {mask:>6} {t_np:>9.2f} {t_avz:>10.2f} {t_np / t_avz:>6.2f}x "
                  f"{100 * frac:>7.3f}%  {runs}", flush=True)
    print("ratio = numpy / attnviz (above 1: attnviz faster); off px: cell pixels with a "
          "channel more than 8 apart (at most 0.1% allowed)")
    if failed:
        sys.exit("the pooled images disagree")


if __name__ == "__main__":
    main()
