"""Writes tests/data/matplotlib-colormaps.json: matplotlib's bytes for every colormap attnviz offers.

Usage: python3 tools/dump_colormaps.py > tests/data/matplotlib-colormaps.json
then:  python3 tools/gen_colormaps.py tests/data/matplotlib-colormaps.json > src/color/tables.rs
Needs matplotlib (3.11.2 made the committed file); the order here is `Colormap::ALL`'s.
"""
import json

import matplotlib
import numpy as np

NAMES = [
    "viridis", "magma", "inferno", "plasma", "cividis", "turbo", "gray",
    # diverging: for signed values (differences), centred with --center / --symmetric
    "RdBu_r", "RdBu", "coolwarm", "bwr", "seismic", "PiYG",
]

maps = {
    n: matplotlib.colormaps[n](np.arange(256), bytes=True)[:, :3].tolist() for n in NAMES
}
print(json.dumps({
    "source": f"matplotlib {matplotlib.__version__}: cmap(np.arange(256), bytes=True)[:, :3]",
    "index_rule": "index = min(floor(x*256), 255) for x in [0,1]",
    "colormaps": maps,
}, separators=(",", ":")))
