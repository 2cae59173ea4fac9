"""Writes matplotlib's rendering of a MiniLM difference, the reference of tests/diverging.rs.

Usage: python3 tools/make_diff_reference.py   (needs numpy and matplotlib; 3.11.2 made the
committed file)

tests/data/minilm_diff_l1_l6_h3_matplotlib.png is head 3 of layer 1 minus head 3 of layer 6 of
tests/data/minilm_attn_128.npy, in float32 as numpy subtracts, coloured as
`RdBu_r(CenteredNorm(0)(a - b), bytes=True)`: CenteredNorm's half-range is max |a - b| over the
head, which is what `attnviz diff` does per head by default (`--norm head`, symmetric about 0).
"""
import os

import matplotlib
import matplotlib.colors as mcolors
import numpy as np
from PIL import Image

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")

attn = np.load(os.path.join(HERE, "minilm_attn_128.npy"))
a, b = attn[0, 2], attn[5, 2]
delta = a - b
assert delta.dtype == np.float32
rgba = matplotlib.colormaps["RdBu_r"](mcolors.CenteredNorm(0)(delta), bytes=True)
Image.fromarray(rgba, "RGBA").save(os.path.join(HERE, "minilm_diff_l1_l6_h3_matplotlib.png"))
print("max |a - b| =", float(np.abs(delta).max()))
