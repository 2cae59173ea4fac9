#!/usr/bin/env python3
"""Keyword fuzzing of the Python package: `attnviz.render`, `figure`, `heads`, `diff` and
`render_qk` on small random inputs, and `attnviz.capture` around a tiny random Llama where
torch and transformers are installed (the capture read after the model ran, as a user reads
it), each call given one to three of its keywords set to values
a user might pass by mistake (None, negative, huge past 64 bits, NaN, infinities, malformed
strings, lists, tuples, ranges, dicts, bytes, numpy scalars). A call must return, or raise
`ValueError`; any other exception (the `TypeError` of a failed conversion in the extension, a
Rust panic's `PanicException`, an `OverflowError`) fails the case, which is printed with its
keywords. The quality bar asks Python to raise `ValueError` for bad input; `./test` runs one
seed. Exit status 1 when any case failed.

    python3 tools/fuzz_python.py --seed 1 --cases 300

Needs the attnviz package (PYTHONPATH at a built one) and numpy.
"""

import argparse
import inspect
import random
import sys

import numpy as np

import attnviz

# Values of the wrong kind or out of range, for any keyword.
ODD = [None, 0, -1, 1, 2, 3, 10**12, -10**12, 2**64, 0.0, -0.5, 1e30, float("nan"),
       float("inf"), -float("inf"), "", "x", "1..0", "0..0", "5..2", "-1", "nan", "1-3", "3-1",
       "0", "1,0", "max", "log", "gamma:0", "gamma:-1", "gamma:nan", [], [0], [1, 1], [-1],
       (0, 0), (5, 2), (0, 10**9), slice(3, 1), range(0), True, False, {"a": 1}, b"x",
       np.float32(1), np.int64(-3)]

# Keywords that write files: left alone, so that a case writes nothing.
WRITES = ("out", "tiles", "stats_json", "figure")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cases", type=int, default=300)
    args = p.parse_args()
    rng = random.Random(args.seed)
    nrng = np.random.default_rng(args.seed)

    def attention():
        shape = rng.choice([(2, 2, 5, 7), (1, 1, 1, 1), (3, 4), (1, 2, 3), (2, 1, 6, 6)])
        a = nrng.random(shape, dtype=np.float32)
        if rng.random() < 0.2:
            a[..., 0] = np.nan
        return a

    def qk():
        n = rng.randint(1, 9)
        q = nrng.standard_normal((1, 2, n, 8), dtype=np.float32)
        k = nrng.standard_normal((1, rng.choice([1, 2]), n + rng.randint(0, 3), 8),
                                 dtype=np.float32)
        return q, k

    def two():
        a = attention()
        return a, nrng.random(a.shape, dtype=np.float32)

    functions = [(attnviz.render, lambda: (attention(),)), (attnviz.figure, lambda: (attention(),)),
                 (attnviz.heads, lambda: (attention(),)), (attnviz.diff, two),
                 (attnviz.render_qk, qk)]
    captured = _capture_run()
    if captured is not None:
        functions.append((captured, lambda: ()))
    failed = returned = 0
    for i in range(args.cases):
        fn, inputs = rng.choice(functions)
        keywords = [p.name for p in inspect.signature(fn).parameters.values()
                    if p.kind == p.KEYWORD_ONLY and p.name not in WRITES]
        kwargs = {rng.choice(keywords): rng.choice(ODD) for _ in range(rng.randint(1, 3))}
        try:
            fn(*inputs(), **kwargs)
            returned += 1
        except ValueError:
            pass
        except Exception as e:  # noqa: BLE001 (any other kind is the failure looked for)
            failed += 1
            print("FAIL #{}: attnviz.{}(..., {}): {}: {}".format(
                i, fn.__name__, ", ".join("{}={!r}".format(k, v) for k, v in kwargs.items()),
                type(e).__name__, str(e)[:300]), flush=True)
    print("{} cases (seed {}; {} returned, {} raised ValueError): {} failed".format(
        args.cases, args.seed, returned, args.cases - returned - failed, failed))
    sys.exit(1 if failed else 0)


def _capture_run():
    """``capture(**kwargs)``: a tiny random Llama run under ``attnviz.capture(model,
    **kwargs)`` and its capture read; None without torch and transformers."""
    try:
        import torch
        import transformers
    except ImportError:
        return None
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)).eval()
    ids = torch.arange(3, 11)[None]

    def capture(**kwargs):
        with torch.no_grad(), attnviz.capture(model, **kwargs) as cap:
            model(ids)
        return cap.layers, cap.q, cap.k

    # (its keywords are attnviz.capture's, whichever they are, as keyword-only parameters)
    keywords = list(inspect.signature(attnviz.capture).parameters.values())[1:]
    capture.__signature__ = inspect.Signature(
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in keywords])
    return capture


if __name__ == "__main__":
    main()
