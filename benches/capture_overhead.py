#!/usr/bin/env python3
"""What ``attnviz.capture`` adds to a forward pass, side by side with the same pass without it.

A Llama-shaped decoder (randomly initialised, nothing downloaded: 8 layers x 8 query heads, 2
key heads, d = 64) runs a batch of two sequences of N tokens, the second padded on the left, so
the model builds a 4D mask and the capture reads it (the padding left out, the rest checked
against a causal mask in blocks of rows). The runs alternate, the plain pass and the captured
one, and the medians are printed with their ratio. Then the same without padding (one
sequence, sdpa with no mask: nothing to read), for the capture's own cost. Then ``generate``
of ``--new`` tokens after a prompt of N / 8, with and without the capture around it (every
decode step appended to the capture: its query row and its new key, a layer at a time).

    python3 benches/capture_overhead.py [--tokens 4096] [--runs 5] [--attn sdpa] [--new 256]

Needs torch, transformers and attnviz (./test's venv has them).
"""

import argparse
import statistics
import time

import torch
import transformers

import attnviz


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--new", type=int, default=256, help="tokens generate adds")
    args = parser.parse_args()
    n = args.tokens
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=1000, hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=n,
        attn_implementation=args.attn)
    model = transformers.LlamaModel(config).eval()
    ids = torch.randint(3, 1000, (2, n))
    padded = torch.ones(2, n, dtype=torch.long)
    padded[1, : n // 8] = 0

    for name, inputs, batch in [
        ("padded batch of 2, item 1", dict(input_ids=ids, attention_mask=padded), 1),
        ("one sequence, no padding", dict(input_ids=ids[:1]), 0),
    ]:
        plain, captured = [], []
        with torch.no_grad():
            model(**inputs)  # warm-up
            for _ in range(args.runs):
                t = time.perf_counter()
                model(**inputs)
                plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                with attnviz.capture(model, batch=batch) as cap:
                    model(**inputs)
                captured.append(time.perf_counter() - t)
        kept = cap.k[0].shape[1]
        a, b = statistics.median(plain), statistics.median(captured)
        print("{} ({} tokens, {} kept, {}): forward {:.3f} s, under capture {:.3f} s: {:.2f}x "
              "(medians of {} alternating runs)".format(name, n, kept, args.attn, a, b, b / a,
                                                        args.runs))

    lm = transformers.LlamaForCausalLM(config).eval()
    prompt = ids[:1, : n // 8]
    settings = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False,
                    pad_token_id=0)
    plain, captured = [], []
    with torch.no_grad():
        lm.generate(prompt, **settings)  # warm-up
        for _ in range(args.runs):
            t = time.perf_counter()
            lm.generate(prompt, **settings)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            with attnviz.capture(lm) as cap:
                lm.generate(prompt, **settings)
            cap.q  # the appended steps joined, as reading the capture does
            captured.append(time.perf_counter() - t)
    a, b = statistics.median(plain), statistics.median(captured)
    print("generate ({} prompt tokens + {} new, {} held, {}): {:.3f} s, under capture {:.3f} s: "
          "{:.2f}x (medians of {} alternating runs)".format(
              n // 8, args.new, cap.k[0].shape[1], args.attn, a, b, b / a, args.runs))


if __name__ == "__main__":
    main()
