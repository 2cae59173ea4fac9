"""Mutation fuzzing of the command line, end to end: valid attention files, Q/K captures (with
their capture metadata) and option values are mutated at random, and each case runs one of
`attnviz render`, `heads`, `info`, `diff` (against a second drawn file) or `attention` as a
user would. Every case must end with exit
code 0, or with exit code 2 and one `error:` line that names the file (or the flag) at fault,
with no output file and no temp file left behind; never a panic, another exit code or a hang.

`cargo fuzz` (fuzz/) drives the parsers in process, byte by byte; this drives what lies past
them (a capture's metadata against its tensors, options against the shape, the Q/K paths'
checks) through the binary, and keeps every failing input.

Usage: python3 tools/fuzz_cli.py [--attnviz target/release/attnviz] [--seed 1] [--cases 200]
Failing cases are copied to --keep (default: a folder printed at the end); exit code 1 if any.
The same seed draws the same cases.
"""
import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

ODD_VALUES = [0, -1, 1, 3, 64, 65, 2**31, 2**32 + 1, 2**63, -2**63, 10**30, 1e308, 0.5, -0.0,
              "x", "", None, True, [], {}, [0], [1, 2], [[1]]]
ODD_OPTION_VALUES = ["0", "-1", "1", "3", "1e9", "4294967296", "nan", "inf", "-inf", "", "x",
                     "0.5", "1e-40", "99999999999999999999", "2..1", "..0", "0..", "5..5", "1,8",
                     "1-0", "1,,2", "-3", "gamma:0", "gamma:-1", "gamma:nan", "0,100", "100,0",
                     "50,50", "-1,101", "nan,1", "0:4", "4:0", "3:3", "0:4,2:6", "1:3,5:8",
                     "0:99999999999999999999", ":", "0:4,"]
VALUE_OPTIONS = ["--softmax-scale", "--sliding-window", "--attention-chunk", "--softcap",
                 "--bidirectional-spans",
                 "--queries", "--layers", "--heads", "--cell", "--scale", "--log-floor", "--clip", "--vmin", "--vmax",
                 "--center", "--top", "--exclude-keys", "--scale-factor", "--dpi", "--sink-keys",
                 "--window", "--title"]
FLAGS = [["--symmetric"], ["--causal", "on"], ["--causal", "off"], ["--norm", "row"],
         ["--norm", "none"], ["--norm", "global"], ["--reduce", "mean"], ["--reduce", "min"],
         ["--reduce", "extreme"], ["--values", "logits"], ["--sort-by", "entropy"],
         ["--no-colorbar"], ["--transparent"], ["--axes", "on"], ["--colormap", "RdBu_r"]]
DTYPES = [("F32", 4, "<f4"), ("F16", 2, "<f2"), ("BF16", 2, None)]


class Case:
    """One drawn case: the file's bytes, its suffix, and the command's arguments after it."""

    def __init__(self, rng):
        self.rng = rng

    def odd(self):
        return self.rng.choice(ODD_VALUES)

    def mutate_json(self, o):
        """One change somewhere in `o`: a value replaced, a key or item dropped or added."""
        rng = self.rng
        if not isinstance(o, (dict, list)) or not o:
            return self.odd()
        slot = rng.choice(list(o)) if isinstance(o, dict) else rng.randrange(len(o))
        r = rng.random()
        if r < 0.3:
            o[slot] = self.odd()
        elif r < 0.4:
            del o[slot]
        elif r < 0.5 and isinstance(o, dict):
            o[rng.choice(["extra", slot + "x"])] = self.odd()
        elif r < 0.5:
            o.append(self.odd())
        else:
            o[slot] = self.mutate_json(o[slot])
        return o

    def values(self, count, size):
        """Small finite values as little-endian floats of `size` bytes (bf16: f32's high half)."""
        xs = [self.rng.uniform(-2, 2) for _ in range(count)]
        f32 = struct.pack(f"<{count}f", *xs)
        if size == 4:
            return f32
        if size == 2 and self.dtype == "F16":
            return struct.pack(f"<{count}e", *xs)
        return b"".join(f32[i + 2:i + 4] for i in range(0, len(f32), 4))

    def safetensors(self, tensors, meta):
        """A .safetensors file of `tensors` (name: (dtype, shape, bytes)), the header mutated
        (a tensor's entry or the metadata) or a tensor's bytes cut short, offsets then laid out
        as the header says."""
        rng = self.rng
        header = {n: {"dtype": d, "shape": list(s)} for n, (d, s, _) in tensors.items()}
        blobs = {n: b for n, (_, _, b) in tensors.items()}
        # (a quarter of the files are left whole, for the options and the render to meet)
        r = rng.random() / 0.75 - 1 / 3
        if r < 0:
            pass
        elif r < 0.45:
            n = rng.choice(list(header))
            header[n] = self.mutate_json(header[n])
        elif r < 0.75 and meta is not None:
            if "attnviz" in meta and rng.random() < 0.8:
                meta["attnviz"] = json.dumps(self.mutate_json(json.loads(meta["attnviz"])))
            else:
                meta = self.mutate_json(meta)
        elif r < 0.9:
            n = rng.choice(list(blobs))
            blobs[n] = blobs[n][:rng.randrange(len(blobs[n]) + 1)]
        out, data = {}, b""
        for n, h in header.items():
            if isinstance(h, dict) and "data_offsets" not in h:
                h["data_offsets"] = [len(data), len(data) + len(blobs[n])]
            out[n] = h
            data += blobs[n]
        if meta is not None:
            out["__metadata__"] = meta
        hb = json.dumps(out).encode()
        hb += b" " * (-len(hb) % 8)
        blob = struct.pack("<Q", len(hb)) + hb + data
        if r >= 0 and rng.random() < 0.1:
            j = rng.randrange(len(blob))
            blob = blob[:j] + bytes([rng.randrange(256)]) + blob[j + 1:]
        if r >= 0 and rng.random() < 0.05:
            blob = blob[:rng.randrange(len(blob) + 1)]
        return blob

    def capture(self):
        rng = self.rng
        layers, heads, kv = rng.choice([1, 2]), 2, rng.choice([1, 2])
        tokens, dim = rng.choice([8, 16, 33]), rng.choice([4, 16])
        self.dtype, size, _ = rng.choice(DTYPES)
        q = self.values(layers * heads * tokens * dim, size)
        k = self.values(layers * kv * tokens * dim, size)
        meta = {"attnviz": json.dumps({
            "format": 1, "model": "FuzzForCausalLM", "tokens": [f"t{i}" for i in range(tokens)],
            "layers": [{"index": i, "scaling": 0.25, "causal": True,
                        "sliding_window": rng.choice([None, 4]),
                        "attention_chunk_size": rng.choice([None, 5]),
                        "softcap": rng.choice([None, 30.0]),
                        "sinks": rng.choice([None, [0.5] * heads]),
                        "bidirectional_spans": rng.choice([None, [[0, 4]], [[1, 3], [5, 8]]])}
                       for i in range(layers)]})}
        return self.safetensors({"q": (self.dtype, [layers, heads, tokens, dim], q),
                                 "k": (self.dtype, [layers, kv, tokens, dim], k)}, meta)

    def attention_st(self):
        rng = self.rng
        shape = [rng.choice([1, 2]), rng.choice([1, 2]), rng.choice([4, 9]), rng.choice([4, 9, 16])]
        self.dtype, size, _ = rng.choice(DTYPES)
        n = shape[0] * shape[1] * shape[2] * shape[3]
        return self.safetensors({"attn": (self.dtype, shape, self.values(n, size))}, None)

    def attention_npy(self):
        """An .npy file whose header dict is mutated (or its data cut short)."""
        rng = self.rng
        shape = [rng.choice([1, 2]), rng.choice([1, 2]), rng.choice([4, 9]), rng.choice([4, 9])]
        self.dtype, size, descr = rng.choice(DTYPES[:2])
        n = shape[0] * shape[1] * shape[2] * shape[3]
        data = self.values(n, size)
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        r = rng.random()
        if r < 0.25:
            pass
        elif r < 0.75:
            header = self.mutate_json(header)
        elif r < 0.9:
            data = data[:rng.randrange(len(data) + 1)]

        def lit(v):  # a Python literal, as numpy writes them
            if isinstance(v, dict):
                return "{" + ", ".join(f"{lit(k)}: {lit(x)}" for k, x in v.items()) + ", }"
            if isinstance(v, list):
                return "(" + "".join(f"{lit(x)}, " for x in v) + ")"
            return repr(v)

        text = lit(header)
        text += " " * (-(10 + len(text) + 1) % 64) + "\n"
        hb = text.encode("latin-1", "replace")
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hb)) + hb + data

    def draw(self):
        """(suffix, file bytes, command, whether the file is Q/K, options); diff's B in
        `self.other` (suffix, bytes)."""
        rng = self.rng
        kind = rng.choice(["capture", "capture", "st", "npy"])
        blob = {"capture": self.capture, "st": self.attention_st, "npy": self.attention_npy}[kind]()
        suffix = ".npy" if kind == "npy" else ".safetensors"
        if rng.random() < 0.2:
            # (a name that says nothing: the format is read from the mutated first bytes)
            suffix = rng.choice([".bin", ""])
        qk = kind == "capture"
        command = rng.choice(["render", "render", "heads", "info", "diff"]
                             + (["attention"] if qk else []))
        # diff's B: the same file (a difference of 0), or another drawn file, of the same
        # kind or not, mutated or whole
        self.other = None
        if command == "diff" and rng.random() < 0.4:
            self.other = (suffix, blob)
        elif command == "diff":
            other = Case(rng)
            kind_b = rng.choice([kind, "capture", "st", "npy"])
            blob_b = {"capture": other.capture, "st": other.attention_st,
                      "npy": other.attention_npy}[kind_b]()
            self.other = (".npy" if kind_b == "npy" else ".safetensors", blob_b)
        options = []
        if command in ("render", "heads", "diff") and rng.random() < 0.3:
            for _ in range(rng.randint(1, 3)):
                if rng.random() < 0.7:
                    options += [rng.choice(VALUE_OPTIONS), rng.choice(ODD_OPTION_VALUES)]
                else:
                    options += rng.choice(FLAGS)
        return suffix, blob, command, qk, options


def run(attnviz, work, rng):
    case = Case(rng)
    suffix, blob, command, qk, options = case.draw()
    path = os.path.join(work, f"case{suffix}")
    with open(path, "wb") as f:
        f.write(blob)
    other = None
    if case.other is not None:
        other = os.path.join(work, f"other{case.other[0]}")
        with open(other, "wb") as f:
            f.write(case.other[1])
    out_dir = os.path.join(work, "out")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.mkdir(out_dir)
    if command == "diff":
        args = [attnviz, command, path, other]
    else:
        # a capture goes as --q FILE, or as the input itself (render, heads) half the time
        as_q = qk and (command == "attention" or (command != "info" and rng.random() < 0.5))
        args = [attnviz, command] + (["--q", path] if as_q else [path])
    if command in ("render", "diff"):
        args += ["-o", os.path.join(out_dir, "figure.png"), "--quiet"]
    elif command == "attention":
        args += ["-o", os.path.join(out_dir, "attention.npy")]
    args += options
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return path, args, "no answer in 120 s", "", None
    err = p.stderr
    # (clap's own refusals end with a pointer to --help, and some show the usage)
    lines = [l for l in err.strip().splitlines()
             if l and not l.startswith(("warning", "For more information"))]
    problem = None
    if "panicked" in err or p.returncode not in (0, 2):
        problem = f"exit code {p.returncode}"
    elif p.returncode == 2:
        usage = any(l.startswith("Usage:") for l in lines)
        if not lines or not lines[0].startswith("error: "):
            problem = "no `error:` line"
        elif not usage and len(lines) != 1:
            problem = f"{len(lines)} lines"
        elif not usage and path not in lines[0] and (other is None or other not in lines[0]) \
                and "--" not in lines[0] and "'" not in lines[0]:
            problem = "the message names neither the file nor an option"
        elif os.listdir(out_dir):
            problem = f"left behind: {os.listdir(out_dir)}"
    return path, args, problem, err, p.returncode


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attnviz", default="target/release/attnviz")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--keep", default=None, help="folder for failing cases")
    args = p.parse_args()
    attnviz = os.path.abspath(args.attnviz)
    rng = random.Random(args.seed)
    keep = args.keep or tempfile.mkdtemp(prefix="attnviz-fuzz-failures-")
    os.makedirs(keep, exist_ok=True)
    failures, exits = 0, {}
    with tempfile.TemporaryDirectory(prefix="attnviz-fuzz-") as work:
        for i in range(args.cases):
            path, cmd, problem, err, code = run(attnviz, work, rng)
            exits[code] = exits.get(code, 0) + 1
            if problem is None:
                continue
            failures += 1
            kept = os.path.join(keep, f"case{i}{os.path.splitext(path)[1]}")
            shutil.copy(path, kept)
            b = next((a for a in cmd[3:4] if a.startswith(os.path.join(work, "other"))), None)
            if b:
                shutil.copy(b, os.path.join(keep, f"case{i}-b{os.path.splitext(b)[1]}"))
            shown = " ".join(os.path.basename(a) if a.startswith(work) else a for a in cmd[1:])
            print(f"case {i}: {problem}: attnviz {shown} (input kept as {kept})")
            print("  " + err.strip().replace("\n", "\n  ")[:2000])
    ends = ", ".join(f"{n} exit {c}" for c, n in sorted(exits.items(), key=str))
    print(f"{args.cases} cases (seed {args.seed}; {ends}): {failures} failed")
    if failures == 0 and not args.keep:
        shutil.rmtree(keep, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
