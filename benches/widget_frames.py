"""Frame time of the notebook widget (attnviz.Viewer): per scripted event, the kernel's work for
one frame, i.e. the event applied, the frame rendered offscreen and read back (``get_frame``),
and the frame encoded as jupyter_rfb sends it during interaction (JPEG, quality 80, its
``array2compressed``). Median and p99 over the events, for two views:

  grid   the 8×8 grid of 256-px cells (8 layers × 8 heads of 2048 tokens, f32, 1 GiB), in the
         default frame (the figure within 1600×1000), dragged by (4, 3) px per event;
  long   a 32768-token f16 head (2 GiB), focused and zoomed 32× in a 1280×800 frame, dragged
         by (4, 3) px per event (as the README's native measurement pans).

Inputs are `attnviz bench`'s (same names, same generator and seed, in ~/.cache/attnviz/bench),
made with `attnviz synth` when missing. The whole figure is read (``settle``) before timing.

    PYTHONPATH=<site with attnviz> python benches/widget_frames.py [--events 100] [--only grid]
"""

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def cli():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return Path(os.environ.get("ATTNVIZ_CLI", target / "release" / "attnviz"))


def cache():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = Path(base) / "attnviz" / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


def generated(name, seq, layers, heads, dtype):
    path = cache() / name
    if not path.exists():
        print("generating {} (once; cached)".format(path), flush=True)
        subprocess.run([str(cli()), "synth", "-o", str(path), "--seq", str(seq), "--layers",
                        str(layers), "--heads", str(heads), "--dtype", dtype, "--seed", "1",
                        "--quiet"], check=True)
    return path


def quantiles(seconds):
    t = sorted(seconds)
    at = lambda q: t[round((len(t) - 1) * q)] * 1e3  # noqa: E731
    return statistics.median(t) * 1e3, at(0.99)


def measure(viewer, events, encode):
    """Drags by (4, 3) px an event, from the frame's centre; returns per-event seconds of
    (event + render, encode)."""
    w, h = viewer._session.size
    x, y = w / 2, h / 2
    viewer.handle_event({"type": "pointer_down", "x": x, "y": y, "button": 1, "buttons": (1,)})
    viewer.get_frame()
    render, enc = [], []
    for _ in range(events):
        x, y = x + 4, y + 3
        t0 = time.perf_counter()
        viewer.handle_event({"type": "pointer_move", "x": x, "y": y, "button": 0,
                             "buttons": (1,)})
        frame = viewer.get_frame()
        t1 = time.perf_counter()
        encode(frame, 80)
        t2 = time.perf_counter()
        render.append(t1 - t0)
        enc.append(t2 - t1)
    viewer.handle_event({"type": "pointer_up", "x": x, "y": y, "button": 1, "buttons": ()})
    return render, enc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=100)
    p.add_argument("--only", choices=["grid", "long"])
    args = p.parse_args()

    import attnviz
    from jupyter_rfb._utils import array2compressed

    scenarios = {
        "grid": lambda: attnviz.Viewer(str(generated("grid-8x8x2048-f32.npy", 2048, 8, 8,
                                                     "f32"))),
        "long": lambda: attnviz.Viewer(str(generated("long-32768-f16.npy", 32768, 1, 1, "f16")),
                                       size=(1280, 800), focus=(1, 1), zoom=32),
    }
    for name, make in scenarios.items():
        if args.only and name != args.only:
            continue
        viewer = make()
        t = time.perf_counter()
        assert viewer.settle(600), "the figure was not read in 10 minutes"
        read = time.perf_counter() - t
        viewer.get_frame()
        render, enc = measure(viewer, args.events, array2compressed)
        total = [a + b for a, b in zip(render, enc)]
        w, h = viewer._session.size
        print("{:5} {}x{} frame, {} events ({}; figure read in {:.1f} s)".format(
            name, w, h, args.events, viewer.adapter, read))
        for label, times in [("event+render", render), ("encode", enc), ("total", total)]:
            print("      {:13} median {:6.1f} ms  p99 {:6.1f} ms".format(label, *quantiles(times)))


if __name__ == "__main__":
    main()
