"""What `attnviz.capture(model, spill=FOLDER)` saves in host memory, and what it costs in time,
side by side with the capture held in memory (the default), on the same forward pass.

A Llama-shaped model (randomly initialised, nothing downloaded; by default 32 layers x 16 query
heads, 4 key heads, d = 64, float32, small hidden and MLP sizes, so that its Q and K, not its
weights or its activations, are what a capture of it holds) runs one sequence of `--seq`
tokens under the capture, without its own KV cache (which would hold K and V of every layer
beside the capture, either way), and the capture is then saved. Each run is a fresh process; it reports:
- the peak of its anonymous resident memory (RssAnon, sampled every 2 ms by a thread) above
  the process's before the forward pass: the model's activations and the capture in memory;
  a spilled capture's pages are the files' (file-backed, which the system writes out and drops
  under memory pressure), not anonymous;
- the forward pass's wall-clock time under the capture, and `Capture.save`'s (the disk synced
  first).
The two ways alternate; medians and ratios are printed, and the two saved files are checked to
be the same bytes.

Needs torch, transformers and attnviz (./test's venv has them).

With `--generate N`, a `generate` of N tokens after the `--seq` tokens of the prompt is captured
instead (its decode steps appended to the capture as they run; the model's own KV cache on, as
generate needs it, the same both ways), and the forward time is the generate's.

Usage: python benches/capture_spill.py [--layers 32] [--seq 2048] [--generate N] [--runs 3]
       [--dir /tmp]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, threading, time
import torch, transformers
import attnviz
way, path, spill, layers, seq, gen = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:7])
torch.manual_seed(0)
config = transformers.LlamaConfig(
    vocab_size=1000, hidden_size=256, intermediate_size=256, num_hidden_layers=layers,
    num_attention_heads=16, num_key_value_heads=4, head_dim=64,
    max_position_embeddings=seq + gen, attn_implementation="sdpa")
model = (transformers.LlamaForCausalLM if gen else transformers.LlamaModel)(config).eval()
ids = torch.randint(3, 1000, (1, seq))
with torch.no_grad():
    model(ids[:, :64])  # warm-up

def anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024

peak, done = [anon()], []
def sample():
    while not done:
        peak[0] = max(peak[0], anon())
        time.sleep(0.002)
before = anon()
threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
with torch.no_grad(), attnviz.capture(model, spill=spill if way == "spill" else None) as cap:
    if gen:
        model.generate(ids, max_new_tokens=gen, min_new_tokens=gen, do_sample=False,
                       pad_token_id=0)
    else:
        model(ids, use_cache=False)
cap.q  # (read, as a user does)
forward = time.perf_counter() - start
os.sync()
start = time.perf_counter()
cap.save(path)
os.sync()
save = time.perf_counter() - start
done.append(1)
time.sleep(0.01)
print(json.dumps({"forward": forward, "save": save, "peak_mib": peak[0] - before}))
"""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--generate", type=int, default=0, metavar="N",
                   help="capture a generate of N tokens after the --seq of the prompt (the "
                   "model's own KV cache on, as generate needs it, the same both ways)")
    p.add_argument("--dir", default=tempfile.gettempdir(),
                   help="where the saved files and the spill go (a disk, not a tmpfs)")
    a = p.parse_args()
    tokens = a.seq + max(a.generate - 1, 0)
    size = 4 * a.layers * (16 + 4) * tokens * 64
    print("a capture of {} layers x 16 query heads (4 KV heads) x {} tokens x d = 64, float32: "
          "{:.0f} MiB{}".format(a.layers, tokens, size / 2**20,
                                ", {} of them generated".format(a.generate - 1)
                                if a.generate else ""))
    ways = ["memory", "spill"]
    spill = tempfile.mkdtemp(prefix="capture-spill-", dir=a.dir)
    paths = {w: os.path.join(a.dir, "capture-spill-{}.safetensors".format(w)) for w in ways}
    results = {w: [] for w in ways}
    try:
        for _ in range(a.runs):
            for way in ways:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, way, paths[way], spill, str(a.layers),
                     str(a.seq), str(a.generate)], check=True, capture_output=True, text=True).stdout
                results[way].append(json.loads(out.strip().splitlines()[-1]))
        same = all(open(paths[w], "rb").read() == open(paths["memory"], "rb").read()
                   for w in ways)
        left = os.listdir(spill)
    finally:
        for path in paths.values():
            if os.path.exists(path):
                os.remove(path)
        for name in os.listdir(spill):
            os.remove(os.path.join(spill, name))
        os.rmdir(spill)
    labels = {"memory": "capture in memory", "spill": "capture(spill=)"}
    for way in ways:
        r = results[way]
        print("{:<18} forward {} s, save {} s, peak RssAnon +{} MiB".format(
            labels[way], " ".join("{:.2f}".format(x["forward"]) for x in r),
            " ".join("{:.2f}".format(x["save"]) for x in r),
            " ".join("{:.0f}".format(x["peak_mib"]) for x in r)))
    med = {w: {k: statistics.median(x[k] for x in r) for k in r[0]} for w, r in results.items()}
    print("spill: forward {:.2f}x, save {:.2f}x the in-memory capture's time; peak anonymous "
          "memory {:.0f} MiB against {:.0f} MiB; the same file: {}; spill files left: {}".format(
              med["spill"]["forward"] / med["memory"]["forward"],
              med["spill"]["save"] / med["memory"]["save"], med["spill"]["peak_mib"],
              med["memory"]["peak_mib"], same, len(left)))
    if not same or left:
        sys.exit(1)


if __name__ == "__main__":
    main()
