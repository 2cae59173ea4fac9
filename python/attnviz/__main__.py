"""``python -m attnviz capture MODEL --text-file book.txt -o capture.safetensors``: the dozen
lines every user of :func:`attnviz.capture` writes first (load a HuggingFace model and its
tokenizer, tokenize a text, run one forward pass under the capture, save it with its tokens),
as one command. The file is what ``attnviz render``, ``view``, ``heads`` and ``diff`` take.

Bad input (no such model, an empty text, an output that cannot be written) is one line on
the standard error and exit status 2, before the model is loaded where it can be told then.
"""

import argparse
import os
import sys

from .capture import _first_line

_PROG = "python -m attnviz"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=_PROG, description="attnviz's Python commands (the renderer is the attnviz "
                                "executable).")
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser(
        "capture", help="capture Q and K of a HuggingFace model on a text",
        description="Runs MODEL (a HuggingFace id or a local folder) on a text under "
                    "attnviz.capture and writes its queries, keys, layer settings and tokens "
                    "to one .safetensors file: attnviz render FILE draws its attention.")
    c.add_argument("model", help="a HuggingFace model id or a folder from save_pretrained")
    text = c.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the text to run the model on")
    text.add_argument("--text-file", metavar="FILE",
                      help="a UTF-8 file holding the text; - reads the standard input")
    c.add_argument("-o", "--output", required=True, help="the capture file (.safetensors)")
    c.add_argument("--max-tokens", type=int, metavar="N",
                   help="keep the first N tokens of the text (default: all)")
    c.add_argument("--generate", type=int, metavar="N",
                   help="let the model continue the text by N tokens (greedy), captured as "
                        "it generates: the attention over the text and what it wrote (a causal "
                        "language model)")
    c.add_argument("--layers", metavar="LIST",
                   help="1-based layers to keep, as attnviz's --layers: 1,6 or 1-4 "
                        "(default: all)")
    c.add_argument("--modules", metavar="GLOB",
                   help="which attention modules to record, a glob over their names "
                        "(an encoder-decoder's decoder.*.encoder_attn, say)")
    c.add_argument("--device", default="cpu",
                   help="where the model runs: cpu (default), cuda, mps, ...; Q and K "
                        "come back to host memory layer by layer")
    c.add_argument("--dtype", default="auto",
                   choices=["auto", "float32", "bfloat16", "float16"],
                   help="the model's weights (auto: as the checkpoint says); Q and K are "
                        "saved in it")
    c.add_argument("--spill", metavar="FOLDER",
                   help="hold the capture in files in FOLDER (on a disk), memory-mapped, not "
                        "in host memory: for captures larger than it (attnviz.capture's "
                        "spill=)")
    c.add_argument("--attn-implementation", default="sdpa",
                   help="the attention the model runs (sdpa, eager, flash_attention_2, ...); "
                        "the capture records what it is given, whichever it is")
    args = parser.parse_args(argv)
    try:
        return _capture(args)
    except ValueError as e:
        print("{} capture: {}".format(_PROG, e), file=sys.stderr)
        return 2


def _capture(args):
    output = os.fspath(args.output)
    if not output.endswith(".safetensors"):
        raise ValueError("{}: a capture file is .safetensors".format(output))
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise ValueError("{}: no folder {} to write it in".format(output, folder))
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ValueError("--max-tokens {}: keep at least one token".format(args.max_tokens))
    if args.generate is not None and args.generate < 1:
        raise ValueError("--generate {}: generate at least one token".format(args.generate))
    looks_local = os.sep in args.model or args.model.startswith(".")
    if looks_local and not os.path.isdir(args.model):
        raise ValueError("{}: no such model folder".format(args.model))
    if args.spill is not None and not os.path.isdir(args.spill):
        raise ValueError("--spill {}: no such folder".format(args.spill))
    layers = _layers(args.layers) if args.layers is not None else None
    text = _text(args)
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ValueError("capturing needs torch and transformers ({}): pip install torch "
                         "transformers".format(e)) from None

    import attnviz

    try:
        # (before the model loads: a misspelt device is told at once)
        torch.device(args.device)
    except RuntimeError as e:
        raise ValueError("--device {}: not a torch device ({})".format(
            args.device, _first_line(e))) from None
    dtype = "auto" if args.dtype == "auto" else getattr(torch, args.dtype)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
        # (the language-model head only where it generates: the base model's attention is
        # the same, without the vocabulary-sized logits)
        auto = transformers.AutoModel
        if args.generate is not None:
            auto = transformers.AutoModelForCausalLM
        model = auto.from_pretrained(
            args.model, dtype=dtype, attn_implementation=args.attn_implementation)
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ValueError("{}: cannot load it ({})".format(args.model, _first_line(e))) from None
    try:
        model = model.to(args.device).eval()
    except (RuntimeError, AssertionError) as e:
        # a device torch knows that this machine lacks (cuda without a driver)
        raise ValueError("--device {}: {}".format(args.device, _first_line(e))) from None
    inputs = tokenizer(text, return_tensors="pt", truncation=args.max_tokens is not None,
                       max_length=args.max_tokens)
    ids = inputs["input_ids"][0]
    if len(ids) == 0:
        raise ValueError("the text has no tokens")
    inputs = {name: value.to(args.device) for name, value in inputs.items()}
    with torch.no_grad(), attnviz.capture(model, layers=layers, modules=args.modules,
                                          spill=args.spill) as cap:
        if args.generate is None:
            model(**inputs)
        else:
            # Captured as it generates: each decode step continues the capture over the KV
            # cache, so the prompt is run once, not again after. The last token generated is
            # never fed back; one more pass over the cache gives its row and key.
            # (the ids and their mask only: a tokenizer's token_type_ids are refused by generate)
            given = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
            out = model.generate(**given, max_new_tokens=args.generate, do_sample=False,
                                 min_new_tokens=args.generate, return_dict_in_generate=True)
            ids = out.sequences[0].cpu()
            if out.past_key_values is not None:
                model(input_ids=out.sequences[:, -1:], past_key_values=out.past_key_values)
            else:
                # (a model that keeps no cache: the whole sequence in one pass)
                model(input_ids=out.sequences[:1])
    cap.save(output, tokens=tokenizer.convert_ids_to_tokens(ids.tolist()))
    print("wrote {} ({}: {} layers, {} tokens)".format(
        output, cap.model, len(cap.layers), len(ids)), file=sys.stderr)
    return 0


def _text(args):
    if args.text is not None:
        text = args.text
    elif args.text_file == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(args.text_file, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError("{}: cannot read it ({})".format(
                args.text_file, getattr(e, "strerror", None) or e)) from None
    if not text.strip():
        raise ValueError("{}: the text is empty".format(args.text_file or "--text"))
    return text


def _layers(spec):
    """attnviz's 1-based ``--layers`` list (``1,6``, ``1-4``) as the model's 0-based indices."""
    out = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise ValueError("--layers {}: not a list of layers such as 1,6 or 1-4".format(
                spec)) from None
        if a < 1 or b < a:
            raise ValueError("--layers {}: layers count from 1, ranges upwards".format(spec))
        out.update(range(a - 1, b))
    return sorted(out)


if __name__ == "__main__":
    sys.exit(main())
