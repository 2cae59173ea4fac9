#!/usr/bin/env python3
"""Times the usual matplotlib way of drawing an attention grid against `attnviz render` on the
same .npy file, and prints the ratio. Run by hand (see README, "Performance"):

    target/release/attnviz synth --seq 2048 --layers 8 --heads 8 --dtype f32 --seed 1 \\
        -o /tmp/grid.npy
    python3 benches/compare_matplotlib.py /tmp/grid.npy

The matplotlib side is what a notebook does: load the (L, H, Q, K) array, one subplot per head,
per-head min-max `Normalize`, `imshow(..., cmap="viridis")`, `savefig` at about the pixel size
attnviz writes (256-pixel cells). Both sides start from a warm page cache and include process
start-up for attnviz (it is timed as the command a user runs). Needs numpy and matplotlib.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def matplotlib_grid(path, out):
    """Returns (total, load, draw+save) seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import Normalize

    t0 = time.perf_counter()
    a = np.load(path)
    if a.ndim != 4:
        sys.exit(f"{path}: expected an (L, H, Q, K) array, got shape {a.shape}")
    t1 = time.perf_counter()
    layers, heads = a.shape[:2]
    cell_in = 2.56  # 256-pixel cells at 100 dpi
    fig, axes = plt.subplots(
        layers,
        heads,
        figsize=(heads * cell_in + 1.0, layers * cell_in + 0.6),
        dpi=100,
        squeeze=False,
    )
    for l in range(layers):
        for h in range(heads):
            m = a[l, h]
            ax = axes[l][h]
            ax.imshow(m, cmap="viridis", norm=Normalize(vmin=m.min(), vmax=m.max()))
            ax.set_xticks([])
            ax.set_yticks([])
            if l == 0:
                ax.set_title(f"h = {h + 1}", fontsize=8)
            if h == 0:
                ax.set_ylabel(f"l = {l + 1}", fontsize=8)
    fig.savefig(out)
    plt.close(fig)
    t2 = time.perf_counter()
    return t2 - t0, t1 - t0, t2 - t1


def attnviz_render(binary, path, out):
    t0 = time.perf_counter()
    r = subprocess.run(
        [binary, "render", "--quiet", path, "-o", out], capture_output=True, text=True
    )
    if r.returncode != 0:
        sys.exit(f"{binary} failed: {r.stderr.strip()}")
    return time.perf_counter() - t0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("npy", help="(L, H, Q, K) attention, e.g. from `attnviz synth`")
    p.add_argument(
        "--attnviz",
        default=os.path.join(here, "..", "target", "release", "attnviz"),
        help="attnviz binary (default: target/release/attnviz)",
    )
    p.add_argument("--runs", type=int, default=3, help="attnviz runs (median is reported)")
    p.add_argument("--mpl-runs", type=int, default=1, help="matplotlib runs (median)")
    args = p.parse_args()

    with open(args.npy, "rb") as f:  # warm the page cache for both sides
        while f.read(1 << 24):
            pass
    with tempfile.TemporaryDirectory() as tmp:
        mpl_png = os.path.join(tmp, "matplotlib.png")
        avz_png = os.path.join(tmp, "attnviz.png")
        attnviz_render(args.attnviz, args.npy, avz_png)  # warm-up
        avz = [attnviz_render(args.attnviz, args.npy, avz_png) for _ in range(args.runs)]
        mpl = [matplotlib_grid(args.npy, mpl_png) for _ in range(args.mpl_runs)]

    mpl_total = statistics.median(r[0] for r in mpl)
    avz_total = statistics.median(avz)
    size = os.path.getsize(args.npy) / (1 << 30)
    print(f"input:      {args.npy} ({size:.2f} GiB)")
    print(
        f"matplotlib: {mpl_total:.2f} s median of {len(mpl)} "
        f"(np.load {statistics.median(r[1] for r in mpl):.2f} s, "
        f"normalize + imshow + savefig {statistics.median(r[2] for r in mpl):.2f} s)"
    )
    print(f"attnviz:    {avz_total:.3f} s median of {len(avz)} (min {min(avz):.3f} s)")
    print(f"ratio:      {mpl_total / avz_total:.1f}x faster")


if __name__ == "__main__":
    main()
