"""Writing a Q/K capture to disk: `attnviz.Capture.save` against what a user would write
instead, `safetensors.torch.save_file` of the layers stacked (`torch.stack(cap.q)`,
`torch.stack(cap.k)`; what `save` itself did before 2026-12-06). Each run is a fresh process
that builds the same per-layer tensors (as `attnviz.capture` leaves them: one Q and one K
tensor a layer, on the host, in the model's dtype), saves them one way, and reports the
wall-clock time of the save (the disk synced first) and how far it raised the process's peak
resident memory. The two
ways alternate; medians and the ratio are printed, and the two files are checked to hold the
same tensors.

Needs torch and safetensors (the test venv `./test` builds has both), not the extension:
capture.py is loaded from the source tree.

Usage: python benches/capture_save.py [--layers 16] [--heads 32] [--kv-heads 8] [--seq 4096]
                                      [--dim 128] [--runs 3] [--dir /tmp]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURE = os.path.join(HERE, "..", "python", "attnviz", "capture.py")

CHILD = r"""
import importlib.util, json, os, resource, sys, time
import torch
spec = importlib.util.spec_from_file_location("capture", sys.argv[1])
capture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(capture)
way, path, layers, heads, kv, seq, dim = sys.argv[2], sys.argv[3], *map(int, sys.argv[4:9])
cap = capture.Capture.__new__(capture.Capture)
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
if way == "attnviz":
    cap.save(path)
else:
    from safetensors.torch import save_file
    save_file({"q": torch.stack(cap.q), "k": torch.stack(cap.k)}, path,
              metadata={"attnviz": cap.metadata()})
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
    paths = {w: os.path.join(a.dir, "capture-save-{}.safetensors".format(w))
             for w in ("attnviz", "stacked")}
    results = {w: [] for w in paths}
    try:
        for _ in range(a.runs):
            for way, path in paths.items():
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, CAPTURE, way, path, str(a.layers), str(a.heads),
                     str(a.kv_heads), str(a.seq), str(a.dim)],
                    check=True, capture_output=True, text=True).stdout
                results[way].append(json.loads(out))
        import torch
        from safetensors.torch import load_file

        mine, theirs = load_file(paths["attnviz"]), load_file(paths["stacked"])
        same = all(torch.equal(mine[n], theirs[n]) for n in ("q", "k"))
    finally:
        for path in paths.values():
            if os.path.exists(path):
                os.remove(path)
    for way, label in (("attnviz", "Capture.save"), ("stacked", "stack + save_file")):
        r = results[way]
        print("{:<18} save {} s (median {:.2f}), peak RSS +{} MiB".format(
            label, " ".join("{:.2f}".format(x["seconds"]) for x in r),
            statistics.median(x["seconds"] for x in r),
            " ".join("{:.0f}".format(x["peak_mib"]) for x in r)))
    t = {w: statistics.median(x["seconds"] for x in r) for w, r in results.items()}
    print("Capture.save takes {:.2f}x the time of stack + save_file; the same tensors: {}".format(
        t["attnviz"] / t["stacked"], same))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
