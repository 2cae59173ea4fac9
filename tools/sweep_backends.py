#!/usr/bin/env python3
"""Random inputs and options, drawn on the GPU and by the CPU renderer, compared.

The tests compare the two backends on inputs chosen by hand; this sweep draws them at random
(shapes with Q ≠ K, f32, f16 and f64, NaN entries, causal heads, slices of query rows, every
norm, reduction, scale, limit and colormap; Q and K with GQA, windows, softcaps, logits,
query slices and a capture's bidirectional spans; `heads`; `diff`;
`attention`'s every probability), so a driver that rounds differently (a GPU's division, its
exp) or a corner no test names shows up as a line naming the input and the options. Nothing
here is timed. Run on every new device (tools/device_check.sh does) and after changing a
kernel:

    python3 tools/sweep_backends.py --runs 100 --seed 1                    # 100 of each kind
    python3 tools/sweep_backends.py --kinds qk --runs 300 --keep failed/   # keep failing inputs

A case fails when the exit codes differ, when one backend panics, when more than 0.1% of the
figure's pixels differ by more than 8 in a channel (one or two LUT steps of viridis; the tests'
tolerance for GPUs that round a division differently), when a statistic differs by more than
1e-5 relative (the statistics' stated tolerance; `pattern`, `argmax` and `non_finite` exactly),
or when an entry `attention` writes differs by more than 1e-5 (relative for logits above 1).
Exit status 1 when any case failed. Needs numpy and Pillow (and safetensors for the Q/K cases
written as captures, with bidirectional spans; left out without it).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

try:
    from safetensors.numpy import save_file
except ImportError:  # (the spans cases need a capture file; the rest do not)
    save_file = None

STATS = ("sink_mass", "local_mass", "entropy", "mean_distance", "row_sum_mean", "max")
EXACT = ("pattern", "non_finite", "argmax")


def run(binary, args):
    r = subprocess.run([binary] + [str(a) for a in args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def figures_differ(a, b):
    x = np.asarray(Image.open(a).convert("RGBA"), np.int16)
    y = np.asarray(Image.open(b).convert("RGBA"), np.int16)
    if x.shape != y.shape:
        return f"figure sizes {x.shape[1]}x{x.shape[0]} and {y.shape[1]}x{y.shape[0]}"
    d = np.abs(x - y).max(-1)
    off = float((d > 8).mean())
    return f"{off:.3%} of the pixels differ (at most {d.max()})" if off > 0.001 else None


def stats_differ(a, b, reference=None):
    """`reference(layer, head)`: that head's entries (f64), indexed by the input's rows as
    `argmax` names them (a `--queries A..B` slice's from A), for telling a near-tie of the
    maximum from a wrong `argmax` (below)."""
    ha, hb = json.load(open(a))["heads"], json.load(open(b))["heads"]
    if len(ha) != len(hb):
        return f"{len(ha)} heads against {len(hb)}"
    for x, y in zip(ha, hb):
        where = f"l = {x['layer']}, h = {x['head']}"
        for k in STATS:
            u, v = x[k], y[k]
            if (u is None) != (v is None) or (
                    u is not None and abs(u - v) > 1e-5 * max(1.0, abs(u), abs(v))):
                return f"{where}: {k} {u} against {v}"
        for k in EXACT:
            if x[k] != y[k] and not (k == "argmax" and near_tie(x, y, reference)):
                return f"{where}: {k} {x[k]} against {y[k]}"
    return None


def near_tie(x, y, reference):
    """Two backends may name different entries as the maximum when the largest entries lie
    within the statistics' tolerance of each other (1e-5 relative: a GPU's exp and sums round
    otherwise). That holds when the reference entry at each backend's argmax is within the
    tolerance of the larger of the two maxima; an argmax naming any other entry still fails."""
    if reference is None or x["argmax"] is None or y["argmax"] is None:
        return False
    ref = reference(x["layer"], x["head"])
    top = max(x["max"], y["max"])
    return all(
        abs(float(ref[q, k]) - top) <= 1e-5 * max(1.0, abs(top))
        for q, k in (x["argmax"], y["argmax"]))


def arrays_differ(a, b):
    x, y = np.load(a), np.load(b)
    if x.shape != y.shape:
        return f"shapes {x.shape} and {y.shape}"
    # (masked logits are -inf on both sides; inf - inf would read as a difference)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    with np.errstate(invalid="ignore"):
        err = np.abs(x - y) / np.maximum(1.0, np.abs(x))
    worst = float(np.max(np.where(same, 0.0, err), initial=0.0))
    return f"entries differ by up to {worst:.3g}" if not worst <= 1e-5 else None


def both(binary, args, outputs, reference=None):
    """Runs `args` once per backend, each writing its own `outputs` (name → suffix); returns
    the first difference, or None. `reference`: see `stats_differ`."""
    done = {}
    for backend in ("gpu", "cpu"):
        extra = []
        for flag, path in outputs.items():
            extra += [flag, f"{path}.{backend}{os.path.splitext(path)[1] or ''}"]
        done[backend] = run(binary, args + ["--backend", backend] + extra)
    (cg, eg), (cc, ec) = done["gpu"], done["cpu"]
    for code, err in done.values():
        if "panicked" in err or "internal error" in err:
            return "panic: " + err[:300]
    if cg != cc:
        return f"exit {cg} (gpu) against {cc} (cpu): {eg[:200]} | {ec[:200]}"
    if cg != 0:
        return None if eg == ec else f"messages differ: {eg[:200]} | {ec[:200]}"
    for flag, path in outputs.items():
        ext = os.path.splitext(path)[1]
        g, c = f"{path}.gpu{ext}", f"{path}.cpu{ext}"
        if ext == ".json":
            diff = stats_differ(g, c, reference)
        else:
            diff = {".png": figures_differ, ".npy": arrays_differ}[ext](g, c)
        if diff:
            return diff
    return None


def probabilities(rng, shape, causal):
    x = rng.standard_normal(shape).astype(np.float32) * random.choice([1.0, 4.0])
    if causal:
        q, k = shape[-2:]
        x = np.where(np.tril(np.ones((q, k), bool), k - q), x, -np.inf)
    # (a row with no visible key, a query before every key, becomes NaN: an input as any other)
    with np.errstate(invalid="ignore"):
        x = np.exp(x - x.max(-1, keepdims=True))
        return x / x.sum(-1, keepdims=True)


def maybe(p, *values):
    return list(values) if random.random() < p else []


def one_of(p, flag, choices):
    return [flag, random.choice(choices)] if random.random() < p else []


def case_render(binary, rng, d):
    layers, heads = random.choice([1, 2]), random.choice([1, 3])
    q = random.choice([1, 2, 7, 31, 64, 100, 257, 300])
    k = random.choice([q, q, random.choice([1, 5, 33, 128, 200, 513])])
    kind = random.choice(["softmax", "softmax", "signed", "causal"])
    if kind == "signed":
        x = rng.standard_normal((layers, heads, q, k)).astype(np.float32)
    else:
        x = probabilities(rng, (layers, heads, q, k), kind == "causal")
    if random.random() < 0.2:
        x.flat[rng.integers(0, x.size)] = np.nan
    r = random.random()
    if r < 0.3:
        x = x.astype(np.float16)
    elif r < 0.4:
        x = x.astype(np.float64)  # (narrowed to f32 as it is read)
    np.save(f"{d}/attn.npy", x)
    o = (one_of(0.5, "--norm", ["head", "layer", "global", "row", "none"])
         + one_of(0.5, "--reduce", ["max", "mean", "min", "extreme"])
         + one_of(0.5, "--cell", ["8", "16", "50", "64", "100", "128", "256", "300"])
         + one_of(0.4, "--causal", ["auto", "on", "off"])
         + one_of(0.3, "--scale", ["linear", "log", "sqrt", "gamma:0.5"])
         + one_of(0.2, "--clip", ["1,99", "0,99.5", "5,50"])
         + maybe(0.15, "--vmin", "0.001") + maybe(0.15, "--vmax", "0.5")
         + one_of(0.2, "--exclude-keys", ["0..1", "0..2"])
         + maybe(0.15, "--center", "0.01") + maybe(0.15, "--symmetric")
         + one_of(0.2, "--colormap", ["magma", "RdBu_r", "gray", "turbo"])
         + one_of(0.2, "--axes", ["on", "off"])
         + maybe(0.1, "--no-colorbar") + maybe(0.1, "--theme", "dark")
         # (a slice of the file's rows, which keep their places; `reference` is the whole
         # head, indexed by the rows argmax names)
         + (["--queries", f"{q // 4}..{q // 2 + 1}"] if q > 4 and random.random() < 0.15
            else []))
    outputs = {"-o": f"{d}/fig.png"}
    if random.random() < 0.15:
        o += ["--sort-by", random.choice(["sink_mass", "entropy", "max"]), "--top", "2"]
    elif random.random() < 0.3:
        outputs["--stats-json"] = f"{d}/stats.json"
    what = f"render {x.shape} {x.dtype} {kind} {' '.join(o + [f for f in outputs if f != '-o'])}"
    reference = lambda layer, head: x[layer - 1, head - 1].astype(np.float64)
    return what, both(binary, ["render", f"{d}/attn.npy", "--quiet"] + o, outputs, reference)


def case_qk(binary, rng, d):
    layers, kv = random.choice([1, 2]), random.choice([1, 2])
    heads = kv * random.choice([1, 2])
    dim = random.choice([4, 16, 64, 72, 128, 160])
    # (1100 and 2100: heads of a workgroup of the statistics' key kernel or more, whose
    # statistics come from the scores, `Gpu::pattern_qk_min_keys`, where d ≤ 64 on CPU adapters)
    nk = random.choice([1, 17, 64, 200, 333, 700, 1100, 2100])
    nq = random.choice([nk, nk, max(1, nk // 3)])
    q = (rng.standard_normal((layers, heads, nq, dim)) * random.choice([0.5, 1, 3])).astype(
        np.float32)
    k = rng.standard_normal((layers, kv, nk, dim)).astype(np.float32)
    if random.random() < 0.3:
        q, k = q.astype(np.float16), k.astype(np.float16)
    if random.random() < 0.08:
        q.flat[rng.integers(0, q.size)] = np.nan
    np.save(f"{d}/q.npy", q)
    np.save(f"{d}/k.npy", k)
    # A capture whose causal layers have bidirectional spans (Gemma-3's images, PaliGemma's
    # prefix): 1 to 3 disjoint runs of two positions or more; no attention chunks, which such
    # a capture refuses.
    spans = None
    if save_file is not None and nk >= 4 and random.random() < 0.25:
        cuts = sorted(random.sample(range(nk + 1), 2 * random.randint(1, min(3, nk // 4))))
        spans = [[a, b] for a, b in zip(cuts[::2], cuts[1::2]) if b - a >= 2] or [[0, 2]]
        meta = {"format": 1, "layers": [{"index": i, "causal": True,
                                          "bidirectional_spans": spans} for i in range(layers)]}
        save_file({"q": q, "k": k}, f"{d}/cap.safetensors",
                  metadata={"attnviz": json.dumps(meta)})
    qk_args = (["--q", f"{d}/cap.safetensors"] if spans else
               ["--q", f"{d}/q.npy", "--k", f"{d}/k.npy"])
    logits = random.random() < 0.2
    o = (one_of(0.5, "--causal", ["on", "off", "auto"])
         + one_of(0.3, "--sliding-window", ["1", "8", "50"])
         + maybe(0.2, "--softcap", "5") + maybe(0.2, "--softmax-scale", "0.3")
         + (["--values", "logits"] if logits else [])
         + (["--queries", f"{nq // 4}..{nq // 2}"] if nq > 4 and random.random() < 0.2 else [])
         + one_of(0.5, "--cell", ["16", "64", "100", "256"])
         + one_of(0.4, "--reduce", ["max", "mean", "min"])
         + ([] if logits else one_of(0.3, "--norm", ["row", "global", "layer"])))
    # (attention chunks: before each query's own under a causal mask, on both sides without)
    if spans is None:
        o += one_of(0.3, "--attention-chunk", ["1", "16", "100"])
    outputs = {"-o": f"{d}/fig.png"}
    if not logits and random.random() < 0.4:
        outputs["--stats-json"] = f"{d}/stats.json"
    what = (f"render --q {q.shape} {q.dtype} --k {k.shape} "
            f"{' '.join(o + [f for f in outputs if f != '-o'])}"
            + (f" (a capture, bidirectional spans {spans})" if spans else ""))
    args = ["render"] + qk_args + ["--quiet"] + o

    def reference(layer, head):
        # (`attention` on the CPU backend, the f64 reference's twin, with the same Q/K
        # options; render's `--causal auto` is causal only where a capture says so)
        same = [a for flag in ("--sliding-window", "--attention-chunk", "--softcap",
                               "--softmax-scale", "--queries")
                if flag in o for a in (flag, o[o.index(flag) + 1])]
        causal = ["--causal"] if "--causal" in o and o[o.index("--causal") + 1] == "on" else []
        code, err = run(binary, ["attention"] + qk_args
                        + ["--backend", "cpu", "-o", f"{d}/ref.npy"] + same + causal)
        if code != 0:
            raise RuntimeError(f"attention for the argmax check: {err}")
        ref = np.load(f"{d}/ref.npy").astype(np.float64)[layer - 1, head - 1]
        # (argmax names a slice's rows as Q does: row i of the slice is row A + i)
        first = int(o[o.index("--queries") + 1].split("..")[0] or 0) if "--queries" in o else 0
        return np.concatenate([np.full((first, ref.shape[1]), np.nan), ref])

    return what, both(binary, args, outputs, reference)


def case_heads_diff(binary, rng, d):
    layers, heads = random.choice([1, 2]), random.choice([1, 2, 4])
    k = random.choice([3, 40, 130, 257, 600])
    q = random.choice([k, k, max(1, k // 2)])
    causal = random.random() < 0.4
    arrays = [probabilities(rng, (layers, heads, q, k), causal) for _ in range(2)]
    if random.random() < 0.15:
        arrays[0].flat[rng.integers(0, arrays[0].size)] = np.nan
    if random.random() < 0.3:
        arrays = [a.astype(np.float16) for a in arrays]
    for name, a in zip("ab", arrays):
        np.save(f"{d}/{name}.npy", a)
    o = (one_of(0.5, "--causal", ["on", "off", "auto"])
         + one_of(0.3, "--sink-keys", ["1", "4"]) + one_of(0.3, "--window", ["1", "5", "64"]))
    what = f"heads {arrays[0].shape} {arrays[0].dtype} {'causal ' if causal else ''}{' '.join(o)}"
    found = both(binary, ["heads", f"{d}/a.npy"] + o, {"--json": f"{d}/heads.json"},
                 lambda layer, head: arrays[0][layer - 1, head - 1].astype(np.float64))
    if found:
        return what, found
    o = (one_of(0.5, "--cell", ["16", "100", "256"])
         + one_of(0.4, "--reduce", ["extreme", "mean", "max"])
         + one_of(0.3, "--norm", ["global", "layer", "head"]) + maybe(0.2, "--clip", "1,99"))
    what = f"diff {arrays[0].shape} {arrays[0].dtype} {' '.join(o)}"
    args = ["diff", f"{d}/a.npy", f"{d}/b.npy", "--quiet"] + o
    return what, both(binary, args, {"-o": f"{d}/diff.png"})


def case_attention(binary, rng, d):
    """`attnviz attention`: every probability (or logit) of random Q and K, both backends,
    within 1e-5 absolute (the Q/K tests' tolerance against the f64 reference)."""
    kv = random.choice([1, 2])
    heads = kv * random.choice([1, 2])
    dim = random.choice([8, 64, 96, 128, 200])
    nk = random.choice([1, 33, 130, 400])
    nq = random.choice([nk, max(1, nk // 2)])
    q = rng.standard_normal((heads, nq, dim)).astype(np.float32) * random.choice([0.3, 1.0, 2.0])
    k = rng.standard_normal((kv, nk, dim)).astype(np.float32)
    np.save(f"{d}/q.npy", q)
    np.save(f"{d}/k.npy", k)
    o = (maybe(0.5, "--causal") + one_of(0.3, "--sliding-window", ["1", "16", "100"])
         + maybe(0.2, "--softcap", "3") + one_of(0.2, "--values", ["logits"])
         + (["--queries", f"..{nq // 2}"] if nq > 2 and random.random() < 0.2 else []))
    if "--causal" in o:
        o += one_of(0.3, "--attention-chunk", ["1", "16", "100"])
    what = f"attention --q {q.shape} --k {k.shape} {' '.join(o)}"
    found = both(binary, ["attention", "--q", f"{d}/q.npy", "--k", f"{d}/k.npy"] + o,
                 {"-o": f"{d}/attn.npy"})
    return what, found


KINDS = {"render": case_render, "qk": case_qk, "heads": case_heads_diff,
         "attention": case_attention}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attnviz", default="target/release/attnviz", help="the binary")
    p.add_argument("--kinds", default="render,qk,heads,attention",
                   help="render, qk, heads (with diff), attention")
    p.add_argument("--runs", type=int, default=50, help="cases of each kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", help="copy each failing case's inputs into this folder")
    p.add_argument("--verbose", action="store_true",
                   help="print every case, not only the failing ones (what a seed covers)")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    random.seed(args.seed)
    failed = 0
    for kind in args.kinds.split(","):
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="attnviz-sweep-") as d:
                what, found = KINDS[kind](args.attnviz, rng, d)
                if found:
                    failed += 1
                    print(f"FAIL {kind} #{i}: {what}: {found}", flush=True)
                elif args.verbose:
                    print(f"ok {kind} #{i}: {what}", flush=True)
                    if args.keep:
                        dest = os.path.join(args.keep, f"{kind}-{i}")
                        shutil.copytree(d, dest, dirs_exist_ok=True)
        print(f"{kind}: {args.runs} cases, seed {args.seed}", flush=True)
    print(f"{failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
