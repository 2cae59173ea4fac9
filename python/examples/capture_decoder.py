"""The README's walkthrough: capture Q and K of a Llama-shaped decoder at 8192 tokens.

    python python/examples/capture_decoder.py capture.safetensors [TOKENS]
    attnviz render --q capture.safetensors -o model.png
    attnviz view --q capture.safetensors

The decoder is randomly initialised (8 layers x 8 query heads, 2 key heads: GQA 4:1) so that
nothing is downloaded; with a real checkpoint only the two `model =` / `ids =` lines change
(`AutoModelForCausalLM.from_pretrained(...)`, the tokenizer's ids). Attention runs as the
model chose (sdpa here): the capture records Q and K on the way in and changes nothing.
"""

import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import attnviz

path = sys.argv[1] if len(sys.argv) > 1 else "capture.safetensors"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 8192
torch.manual_seed(0)
config = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1024,
                     num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                     max_position_embeddings=n, attn_implementation="sdpa")
model = LlamaForCausalLM(config).eval()
ids = torch.randint(0, config.vocab_size, (1, n))

with torch.no_grad(), attnviz.capture(model) as cap:
    model(ids)
print(cap)
cap.save(path, tokens=["#{}".format(i) for i in range(n)])
