"""What a Q/K capture costs in host memory and time beyond itself, saved to disk and rendered in
process, against what a user would do instead:
- save: `attnviz.Capture.save` against `safetensors.torch.save_file` of the layers stacked
  (`torch.stack(cap.q)`, `torch.stack(cap.k)`; what `save` itself did before 2026-12-06);
- render: `attnviz.render_qk(cap)` against `attnviz.render_qk` of those stacked tensors (what
  `render_qk(cap)` itself did before 2026-12-06), a few query rows only (`queries`), so that
  the time is the inputs' and the memory the copies'.

Each run is a fresh process that builds the same per-layer tensors (as `attnviz.capture` leaves
them: one Q and one K tensor a layer, on the host, in the model's dtype), does one of the four,
and reports its wall-clock time (the disk synced first) and how far it raised the process's
peak resident memory. The two ways of each alternate; medians and ratios are printed, and the
two saved files are checked to hold the same tensors, the two figures to be the same pixels.

Needs the attnviz package (`pip install ./python`, or PYTHONPATH at a built one) and torch.

Usage: python benches/capture_memory.py [--layers 16] [--heads 32] [--kv-heads 8] [--seq 4096]
                                        [--dim 128] [--runs 3] [--dir /tmp]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
import numpy as np
import torch
import attnviz
way, path, layers, heads, kv, seq, dim = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8])
cap = attnviz.Capture.__new__(attnviz.Capture)
cap.model, cap._records = "Bench", {}
g = torch.Generator().manual_seed(0)
for i in range(layers):
    q = torch.randn(heads, seq, dim, generator=g).to(torch.bfloat16)
    k = torch.randn(kv, seq, dim, generator=g).to(torch.bfloat16)
    cap._records[i] = (q, k, {"index": i, "scaling": dim ** -0.5, "causal": True,
                              "sliding_window": None, "softcap": None, "sinks": None})
# (the runs before have written gigabytes: each save starts with them on disk, not dirty)
os.sync()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
rows = dict(queries=(0, 64), cell=64, causal=True)
if way == "save-attnviz":
    cap.save(path)
elif way == "save-stacked":
    from safetensors.torch import save_file
    save_file({"q": torch.stack(cap.q), "k": torch.stack(cap.k)}, path,
              metadata={"attnviz": cap.metadata()})
elif way == "render-attnviz":
    np.save(path, attnviz.render_qk(cap, **rows))
else:
    np.save(path, attnviz.render_qk(torch.stack(cap.q), torch.stack(cap.k),
                                    softmax_scale=dim ** -0.5, **rows))
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mib": (after - before) / 1024}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", default=tempfile.gettempdir())
    a = p.parse_args()
    size = 2 * a.layers * (a.heads + a.kv_heads) * a.seq * a.dim
    print("a capture of {} layers x {} query heads ({} KV heads) x {} tokens x d = {}, bf16: "
          "{:.0f} MiB".format(a.layers, a.heads, a.kv_heads, a.seq, a.dim, size / 2**20))
    ways = ["save-attnviz", "save-stacked", "render-attnviz", "render-stacked"]
    paths = {w: os.path.join(a.dir, "capture-memory-{}.{}".format(
        w, "safetensors" if w.startswith("save") else "npy")) for w in ways}
    results = {w: [] for w in ways}
    try:
        for _ in range(a.runs):
            for way in ways:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, way, paths[way], str(a.layers), str(a.heads),
                     str(a.kv_heads), str(a.seq), str(a.dim)],
                    check=True, capture_output=True, text=True).stdout
                results[way].append(json.loads(out.strip().splitlines()[-1]))
        import numpy as np
        import torch
        from safetensors.torch import load_file

        mine, theirs = load_file(paths["save-attnviz"]), load_file(paths["save-stacked"])
        same = {"save": all(torch.equal(mine[n], theirs[n]) for n in ("q", "k")),
                "render": np.array_equal(np.load(paths["render-attnviz"]),
                                         np.load(paths["render-stacked"]))}
    finally:
        for path in paths.values():
            if os.path.exists(path):
                os.remove(path)
    labels = {"save-attnviz": "Capture.save", "save-stacked": "stack + save_file",
              "render-attnviz": "render_qk(cap)", "render-stacked": "render_qk(stacked)"}
    for way in ways:
        r = results[way]
        print("{:<20} {} s (median {:.2f}), peak RSS +{} MiB".format(
            labels[way], " ".join("{:.2f}".format(x["seconds"]) for x in r),
            statistics.median(x["seconds"] for x in r),
            " ".join("{:.0f}".format(x["peak_mib"]) for x in r)))
    t = {w: statistics.median(x["seconds"] for x in r) for w, r in results.items()}
    m = {w: statistics.median(x["peak_mib"] for x in r) for w, r in results.items()}
    for what in ("save", "render"):
        print("{}: attnviz's way takes {:.2f}x the time and {:.0f} MiB of the other's {:.0f} MiB "
              "beyond the capture; the same output: {}".format(
                  what, t[what + "-attnviz"] / t[what + "-stacked"], m[what + "-attnviz"],
                  m[what + "-stacked"], same[what]))
    if not all(same.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
