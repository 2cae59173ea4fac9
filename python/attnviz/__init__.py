"""Transformer attention maps rendered on the GPU, straight from numpy, torch and HuggingFace.

    import attnviz
    out = model(**inputs, output_attentions=True)
    attnviz.figure(out.attentions)            # a notebook cell shows the grid inline

``render`` returns the figure as an (H, W, 4) uint8 numpy array (and writes ``out``, PNG or
SVG, when given); ``figure`` returns a :class:`Figure` (``.image``, ``.layout``, ``.svg``,
``.save(path)``, shown inline by notebooks); ``render_qk`` / ``figure_qk`` recompute the attention
from queries and keys on the GPU; ``view`` opens the interactive window, and ``Viewer`` is the
same viewer as a Jupyter widget (with jupyter_rfb installed). Every option of
``attnviz render`` is a keyword, with its defaults (``RENDER_OPTIONS`` lists each flag and its
keyword, or why it has none).

Inputs are read where they are: a C-contiguous numpy array or CPU torch tensor is never copied
(anything else is copied once), the per-layer tensors of ``outputs.attentions`` are never
stacked, and a file's path is streamed from the file as the command line streams it
(``attnviz.render("attn.safetensors", tensor="attn")``; a Q/K capture's file is recomputed).
The GIL is released while the GPU works. Bad input raises ``ValueError`` with the
command line's one-line message; GPU and environment problems raise ``RuntimeError``.
"""

import json
import os
import sys
import threading
import warnings

import numpy as np

from . import _attnviz

from .capture import Capture, _BF16Bits, _is_int, capture


def __getattr__(name):
    # The notebook widget needs jupyter_rfb (``pip install jupyter_rfb``): imported on first use,
    # so the rest of the package works without it.
    if name == "Viewer":
        from .widget import Viewer

        return Viewer
    raise AttributeError("module 'attnviz' has no attribute {!r}".format(name))


__all__ = ["render", "figure", "render_qk", "figure_qk", "diff", "heads", "view", "capture",
           "Capture", "Figure", "NORMS", "COLORMAPS", "REDUCES", "RENDER_OPTIONS"]
__version__ = "0.1.0"

NORMS = tuple(_attnviz.NORMS)
COLORMAPS = tuple(_attnviz.COLORMAPS)
REDUCES = tuple(_attnviz.REDUCES)
# (flag, kind, keyword or reason, scope) for every option of `attnviz render`: kind "keyword"
# (of the functions in scope: "all", "attention" for render/figure, "qk" for render_qk/figure_qk),
# "attribute" (of Figure) or "cli-only" (with the reason). One table in the Rust library.
RENDER_OPTIONS = tuple(tuple(row) for row in _attnviz.RENDER_OPTIONS)

_warned_cpu = False


class Figure:
    """A rendered attention grid.

    Attributes: ``image`` (H, W, 4) uint8 RGBA, top row first; ``width``, ``height``;
    ``causal`` (entries above the diagonal were masked, asked for or detected); ``adapter``
    (the GPU that drew it, or ``"CPU"`` for the reference renderer); ``layout`` (a dict: where
    each cell landed, its layer, head and colour range, and the colorbar, as ``attnviz render
    --layout-json`` writes it); ``svg`` (the SVG document when ``out`` ended in ``.svg``, else
    None).
    """

    def __init__(self, image, causal, adapter, layout=None, svg=None):
        self.image = image
        self.causal = causal
        self.adapter = adapter
        self._layout = layout
        self.svg = svg

    @property
    def width(self):
        return self.image.shape[1]

    @property
    def height(self):
        return self.image.shape[0]

    @property
    def layout(self):
        """The layout as a dict (a new one on each access)."""
        return None if self._layout is None else json.loads(self._layout)

    def to_png(self):
        """The figure as PNG bytes."""
        return _attnviz._encode_png(self.image)

    def save(self, path):
        """Writes the figure to ``path`` (atomically: no partial file on failure): PNG, or its
        SVG document when the name ends in ``.svg`` and the figure has one (``out`` ended in
        ``.svg``). Other extensions raise ValueError."""
        _attnviz._save_figure(os.fspath(path), self.image, self.svg)

    def _repr_png_(self):
        return self.to_png()

    def _repr_svg_(self):
        # None (no SVG representation) unless SVG was asked for: notebooks then show the PNG.
        return self.svg

    def __repr__(self):
        return "<attnviz.Figure {}x{}{} ({})>".format(
            self.width, self.height, ", causal" if self.causal else "", self.adapter
        )


# The keywords every render function takes, after the input; their meaning is the CLI's
# `attnviz render` option of the same name (RENDER_OPTIONS maps each flag to its keyword).
_OPTION_DOC = """
    out: also write the figure to this file: PNG, or SVG when it ends in ``.svg`` (text, ticks
        and colorbar as vectors; ``Figure.svg`` holds the document and notebooks show it).
    layers, heads: 1-based selection, ``"1,8"``, ``"1-4"``, an int or a list of ints (default
        all).
    norm: "head" (default), "layer", "global", "row" or "none".
    colormap: "viridis" (default), "magma", "inferno", "plasma", "cividis", "turbo", "gray".
    reduce: how entries sharing a pixel combine: "max" (default), "mean" or "min".
    cell: cell side in pixels (default 256; a shorter head is magnified by the largest integer
        factor that fits, so entries stay crisp squares). Given, it is used as is.
    causal: "auto" (mask above the diagonal when every head is zero there), "on"/True,
        "off"/False.
    colorbar: draw the colorbar right of the grid.
    scale: curve from normalized value to colour: "linear" (default), "log", "sqrt" or
        "gamma:G".
    log_floor: with ``scale="log"``, values below this take the bottom colour (default 1e-6
        of each scope's max).
    clip: limits at these percentiles of each scope's pooled values: (LOW, HIGH) or
        ``"LOW,HIGH"``, e.g. (0, 99.5).
    vmin, vmax: fixed limits (override the data's and ``clip``'s).
    center: map this value to the middle of the colormap, each side linear (matplotlib's
        TwoSlopeNorm); with ``symmetric``, the centre of the symmetric range.
    symmetric: limits at centre ± max |v − centre| per ``norm`` scope (matplotlib's
        CenteredNorm; centre 0 unless ``center`` is given).
    axes: position ticks on the outer cells: True/"on", False/"off" (default: on for one cell,
        off for grids).
    sort_by: draw the heads in the order of a statistic of :func:`heads` ("sink_mass",
        "local_mass", "entropy", "mean_distance", "max", "row_sum_mean"), highest first, each
        labelled with its layer and head; top: keep only the N highest.
    pattern: draw only the heads with this ``pattern`` label of :func:`heads` ("sink",
        "local", "vertical-slash", "block-sparse", "mixed"), or with one of a list of them
        (``["sink", "local"]``, or ``"sink,local"``), in layer and head order or ``sort_by``'s;
        a label no head has raises ``ValueError`` naming the labels the heads have.
    exclude_keys: leave the first K keys (attention sinks) out of the statistics: K,
        ``range(0, K)`` or ``"0..K"``. They still render, saturated.
    title: a line above the grid.
    tokens: one string per key, drawn beside each cell when at most 64, index ticks otherwise.
    scale_factor: make the whole figure this many times larger; dpi: the same as DPI, 100 the
        default size (give one of the two).
    theme: "light" (default) or "dark"; transparent: a transparent background.
    tiles: also write every head drawn (with ``top``, those kept) as ``tiles/l{l}_h{h}.png`` at
        native resolution.
    stats_json: also write every selected head's pattern statistics to this JSON file (as
        ``attnviz heads --json``; with ``top``, every head ranked, not only those drawn),
        computed in the same pass; sink_keys (sink mass counts the first N keys, default 1) and
        window (local mass counts |a - k| < W, default 32) tune them, and the ranking of
        ``sort_by`` (without either, they are refused: ``ValueError``).
    backend: "auto" (GPU, the CPU renderer with a warning when there is no adapter), "gpu" or
        "cpu".
"""


def render(
    attn,
    out=None,
    *,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    scale="linear",
    log_floor=None,
    clip=None,
    vmin=None,
    vmax=None,
    center=None,
    symmetric=False,
    axes=None,
    sort_by=None,
    top=None,
    pattern=None,
    exclude_keys=None,
    title=None,
    tokens=None,
    queries=None,
    tensor=None,
    scale_factor=1.0,
    dpi=None,
    theme="light",
    transparent=False,
    tiles=None,
    stats_json=None,
    sink_keys=None,
    window=None,
    batch=0,
    backend="auto",
):
    """Renders attention as a labelled grid and returns it as an (H, W, 4) uint8 array.

    attn: (L, H, Q, K), (H, Q, K) or (Q, K) float32/float16 (numpy array, CPU torch tensor, or
        anything ``np.asarray`` reads), or a list/tuple with one (batch, H, Q, K) or (H, Q, K)
        tensor per layer, as HuggingFace returns ``outputs.attentions``; or the path of a file
        ``attnviz render`` reads (``.npy``, ``.safetensors`` in f32, f16, bf16 or f64, ``tensor``
        naming one of several), streamed from the file in bounded memory as the CLI streams
        it, or a Q/K capture (an :class:`attnviz.Capture`, or its file), whose attention is
        recomputed (as :func:`render_qk` with its defaults).
    batch: the batch item to show from per-layer (batch, H, Q, K) tensors.
    queries: only these query rows of every head, 0-based, end excluded (``"A..B"``, ``(A, B)``,
        ``slice(A, B)`` or ``range(A, B)``, as ``attnviz render --queries``). They keep their
        places: the causal mask, the statistics' distances, the query axis (ticked A..B) and
        the tokens are the whole head's, as they would not be for ``attn[..., A:B, :]``.
    """
    return _render(attn, batch, _options(locals()), queries, tensor).image


def figure(
    attn,
    out=None,
    *,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    scale="linear",
    log_floor=None,
    clip=None,
    vmin=None,
    vmax=None,
    center=None,
    symmetric=False,
    axes=None,
    sort_by=None,
    top=None,
    pattern=None,
    exclude_keys=None,
    title=None,
    tokens=None,
    queries=None,
    tensor=None,
    scale_factor=1.0,
    dpi=None,
    theme="light",
    transparent=False,
    tiles=None,
    stats_json=None,
    sink_keys=None,
    window=None,
    batch=0,
    backend="auto",
):
    """Like :func:`render`, but returns a :class:`Figure`, which a notebook shows inline."""
    return _render(attn, batch, _options(locals()), queries, tensor)


def render_qk(
    q,
    k=None,
    out=None,
    *,
    tokens=None,
    queries=None,
    values="probs",
    softmax_scale=None,
    sliding_window=None,
    attention_chunk=None,
    softcap=None,
    bidirectional_spans=None,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    scale="linear",
    log_floor=None,
    clip=None,
    vmin=None,
    vmax=None,
    center=None,
    symmetric=False,
    axes=None,
    sort_by=None,
    top=None,
    pattern=None,
    exclude_keys=None,
    title=None,
    scale_factor=1.0,
    dpi=None,
    theme="light",
    transparent=False,
    tiles=None,
    stats_json=None,
    sink_keys=None,
    window=None,
    backend="auto",
):
    """Renders the attention ``softmax(softmax_scale · Q Kᵀ)`` recomputed on the GPU from
    queries and keys, as ``attnviz render --q --k`` does: never stored, so heads far longer than
    memory would hold as probabilities render. Returns an (H, W, 4) uint8 array.

    q: (L, H, N_q, d), (H, N_q, d) or (N_q, d) float32/float16/bfloat16; k: (L, H_kv, N_k, d)
        with H a multiple of H_kv (grouped-query attention). Copied once (they are N·d, not N²).
        Or both lists of one (H, N, d) array per layer, as hooks collect them (never stacked:
        the layers are copied side by side).
        Or q is an :class:`attnviz.Capture` and k is omitted: its layers' scales, sliding
        windows, softcaps, causality and sink logits apply, as they do from its file.
    tokens: one string per position, to label the axes (a capture's own when omitted).
    values: "probs" (default), or "logits": the pre-softmax scores ``scale · q·k`` (softcapped
        where the layer is), in logit units, hidden entries masked.
    queries: the query rows to compute, 0-based, end excluded: ``"A..B"``, ``(A, B)``,
        ``slice(A, B)`` or ``range(A, B)`` (default all).
    softmax_scale: default 1/√d (or the capture's per-layer scale).
    sliding_window: hide keys N or more positions older than each query, in every layer;
        without a causal mask, as far after it too (a two-sided window, as in ModernBERT's
        local layers) (default: the capture's per-layer windows, else none).
    attention_chunk: hide the keys outside each query's chunk of N positions, in every
        layer: before it under a causal mask (Llama 4's chunked layers), before and after it
        without one (a vision tower attending within each video frame) (default: the
        capture's per-layer chunks, else none).
    softcap: scores become C·tanh(s/C) before the softmax, in every layer (default: the
        capture's).
    bidirectional_spans: runs of positions ``[(s, e), ...]`` (end excluded) that attend to
        each other both ways on top of the causal mask, in every layer: the query at ``a``,
        ``s <= a < e``, also sees the keys up to ``e`` (Gemma-3's image tokens, PaliGemma's
        prefix; needs ``causal="on"`` or a causal capture) (default: the capture's per-layer
        spans).
    causal: "on"/True hides each query's later keys (bottom-right aligned, as in decoders);
        "auto" (default) and "off" compute full attention.
    The other options are :func:`render`'s.
    """
    return _render_qk(q, k, _qk_options(locals()), _options(locals())).image


def figure_qk(
    q,
    k=None,
    out=None,
    *,
    tokens=None,
    queries=None,
    values="probs",
    softmax_scale=None,
    sliding_window=None,
    attention_chunk=None,
    softcap=None,
    bidirectional_spans=None,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    scale="linear",
    log_floor=None,
    clip=None,
    vmin=None,
    vmax=None,
    center=None,
    symmetric=False,
    axes=None,
    sort_by=None,
    top=None,
    pattern=None,
    exclude_keys=None,
    title=None,
    scale_factor=1.0,
    dpi=None,
    theme="light",
    transparent=False,
    tiles=None,
    stats_json=None,
    sink_keys=None,
    window=None,
    backend="auto",
):
    """Like :func:`render_qk`, but returns a :class:`Figure`."""
    return _render_qk(q, k, _qk_options(locals()), _options(locals()))


render.__doc__ += _OPTION_DOC
figure.__doc__ += _OPTION_DOC


def heads(
    attn,
    k=None,
    *,
    layers=None,
    heads=None,
    causal="auto",
    sink_keys=1,
    window=32,
    batch=0,
    queries=None,
    tensor=None,
    softmax_scale=None,
    sliding_window=None,
    attention_chunk=None,
    softcap=None,
    bidirectional_spans=None,
    backend="auto",
    figure=None,
    title=None,
    sort_by=None,
    top=None,
    pattern=None,
    as_array=False,
):
    """Which heads matter: every selected head's pattern statistics, as ``attnviz heads --json``
    computes them in one pass over the input, returned as a list of dicts (layer and head
    1-based): ``sink_mass``, ``local_mass``, ``entropy``, ``mean_distance``, ``max``,
    ``argmax`` [q, k], ``top_keys`` and ``top_offsets`` ([[index, mass], ...]),
    ``row_sum_mean``, ``pattern`` (sink, local, vertical-slash, block-sparse or mixed),
    ``recalls`` and ``non_finite``; or, with ``as_array=True``, as a numpy structured array with
    one record per head (see below). ``attnviz.heads(out.attentions, sort_by="sink_mass",
    top=10)`` lists the ten heads with the most sink mass, highest first.

    attn: what :func:`render` takes (arrays, HF ``outputs.attentions``, a file's path with
        ``tensor`` naming one of its tensors, streamed as ``attnviz heads FILE`` streams it); or
        queries with ``k`` the keys (as :func:`render_qk` takes them: arrays, or lists of
        per-layer arrays), or an :class:`attnviz.Capture` or its file's path (its windows,
        softcaps and sinks apply), whose attention is recomputed, never stored.
    sink_keys: ``sink_mass`` counts the first N keys. window: ``local_mass`` counts keys with
        ``|a − k| < window``. queries: only these query rows (as :func:`render_qk` takes them),
        of stored attention too; they keep their places (distances from their own positions,
        ``argmax`` rows numbered as in the input). The other options are :func:`render`'s and
        :func:`render_qk`'s.
    figure: also write the summary figure ``attnviz heads --figure`` draws to this file (PNG,
        or SVG when it ends in ``.svg``): one layer × head heatmap of the ``pattern`` labels,
        with a legend, then one per statistic (sink_mass, local_mass, entropy, mean_distance,
        max, row_sum_mean), each with its colorbar.
        It keeps every head in its place, whatever ``sort_by`` and ``top`` list. title: a line
        above that figure (``ValueError`` without ``figure``, as ``--title`` needs
        ``--figure``).
    sort_by: list the heads highest first by one of ``sink_mass``, ``local_mass``,
        ``entropy``, ``mean_distance``, ``max`` or ``row_sum_mean`` (ties and NaN keep layer
        and head order, NaN last), as ``attnviz heads --sort-by`` does. top: with ``sort_by``,
        only the N highest. pattern: only the heads with this label, or one of these labels
        (``"sink"``, ``["sink", "local"]``), as ``attnviz heads --pattern`` lists them (none
        match: an empty list).
    as_array: return a numpy structured array, one record per head, with the fields of
        ``attnviz heads --csv`` (``layer``, ``head``, the scalar statistics, ``argmax`` as two
        ints, ``pattern``, ``recall_a_shape``, ``recall_vertical_slash``,
        ``recall_block_sparse``, ``non_finite``) and the top lists as fixed-size fields:
        ``top_keys`` and ``top_offsets`` (int64, 8 each) with their masses in ``top_keys_mass``
        and ``top_offsets_mass`` (float64). A head with fewer than 8 columns or diagonals with
        mass pads its lists with index 0 and mass NaN; a head with no finite entry has ``max``
        NaN and ``argmax`` (-1, -1). Filter and sort with numpy:
        ``h = attnviz.heads(attn, as_array=True); h[h["sink_mass"] > 0.5]``,
        ``np.sort(h, order="entropy")``.
    """
    _headless()
    options = _options(dict(layers=layers, heads=heads, causal=causal, sink_keys=sink_keys,
                            window=window, backend=backend, sort_by=sort_by, top=top,
                            pattern=pattern, title=title))
    figure = _path(figure, "figure")
    if title is not None and figure is None:
        raise ValueError("title is drawn above the summary figure: give figure= too")
    qk = _qk_options(dict(queries=queries, softmax_scale=softmax_scale,
                          sliding_window=sliding_window, attention_chunk=attention_chunk,
                          softcap=softcap, bidirectional_spans=bidirectional_spans,
                          values="probs"))
    _check_batch("attnviz.heads", attn, k, batch)
    source = _file_source("attnviz.heads", attn, tensor, options, qk, k)
    if source is not None:
        doc, warning = _attnviz._heads_source(source, options, figure)
    elif isinstance(attn, Capture) or k is not None:
        qa, ka, bf16 = _qk_inputs(attn, k, qk, options)
        doc, warning = _attnviz._heads_qk(qa, ka, bf16, options, qk, figure)
    else:
        _stored_only("attnviz.heads", qk)
        arrays, stacked, bf16 = _prepare(attn, batch)
        doc, warning = _attnviz._heads(arrays, stacked, bf16, options, figure,
                                       _queries(queries))
    _warn_cpu(warning)
    doc = json.loads(doc)
    if as_array:
        return _heads_array(doc["heads"], doc["options"]["top_lists"])
    return doc["heads"]


# The record of attnviz.heads(as_array=True): attnviz heads --csv's columns, in its order, with
# the top lists as fixed-size fields.
_HEAD_SCALARS = ("sink_mass", "local_mass", "entropy", "mean_distance", "max")
_RECALLS = ("a_shape", "vertical_slash", "block_sparse")


def _heads_array(records, top):
    """The statistics' records as a numpy structured array (see :func:`heads`)."""
    # (the labels' field as wide as the longest label, so that none is cut)
    label = max((len(r["pattern"]) for r in records), default=1)
    dtype = np.dtype(
        [("layer", "i4"), ("head", "i4")]
        + [(name, "f8") for name in _HEAD_SCALARS]
        + [("argmax", "i8", (2,)), ("row_sum_mean", "f8"), ("pattern", "U{}".format(label))]
        + [("recall_" + name, "f8") for name in _RECALLS]
        + [("non_finite", "i8")]
        + [(field + suffix, kind, (top,)) for field in ("top_keys", "top_offsets")
           for suffix, kind in (("", "i8"), ("_mass", "f8"))]
    )
    out = np.zeros(len(records), dtype=dtype)
    for i, r in enumerate(records):
        row = out[i]
        for name in ("layer", "head", "pattern", "non_finite"):
            row[name] = r[name]
        # (JSON has no NaN: a statistic that is none, such as the max of a head with no finite
        # entry, comes as null)
        for name in _HEAD_SCALARS + ("row_sum_mean",):
            row[name] = np.nan if r[name] is None else r[name]
        row["argmax"] = (-1, -1) if r["argmax"] is None else r["argmax"]
        for name in _RECALLS:
            value = r["recalls"][name]
            row["recall_" + name] = np.nan if value is None else value
        for field in ("top_keys", "top_offsets"):
            pairs = r[field]
            row[field + "_mass"] = np.nan
            row[field][: len(pairs)] = [index for index, _ in pairs]
            row[field + "_mass"][: len(pairs)] = [mass for _, mass in pairs]
    return out


def diff(
    a,
    b,
    out=None,
    *,
    layers=None,
    heads=None,
    norm="head",
    colormap="RdBu_r",
    reduce="extreme",
    cell=None,
    causal="auto",
    colorbar=True,
    center=None,
    scale="linear",
    log_floor=None,
    clip=None,
    vmin=None,
    vmax=None,
    axes=None,
    sort_by=None,
    top=None,
    pattern=None,
    exclude_keys=None,
    title=None,
    tokens=None,
    scale_factor=1.0,
    dpi=None,
    theme="light",
    transparent=False,
    tiles=None,
    sink_keys=None,
    window=None,
    tensor=None,
    batch=0,
    backend="auto",
):
    """Renders the difference ``a − b`` of two attention inputs of the same shape (two prompts,
    two checkpoints, before and after fine-tuning), as ``attnviz diff A B`` does, and returns a
    :class:`Figure`. The subtraction runs on the GPU as both inputs stream; neither is copied.

    a, b: as :func:`render`'s ``attn`` (each may be a per-layer list, or a file's path, read
        in place, ``tensor`` naming the same tensor in both); any float dtypes; or an
        :class:`attnviz.Capture` (live or loaded) or a capture's file, whose attention is
        recomputed with its layers' settings, never stored (two prompts, two checkpoints at
        long context).
    reduce: "extreme" (default: the signed value of largest magnitude in each pixel), "mean",
        "max" or "min".
    colormap: "RdBu_r" (default) or any of ``COLORMAPS``.
    center: the value drawn white; limits are symmetric about it (default 0) per ``norm`` scope,
        as matplotlib's ``CenteredNorm``.
    causal: as :func:`render`'s; "auto" masks above the diagonal where both inputs are causal
        (row 0 of every head zero past the diagonal, or a capture's own word), whatever the
        difference's values.
    The other options are :func:`render`'s, as ``attnviz diff`` takes every ``render`` flag
    (limits are symmetric about ``center`` whatever is given); ``sink_keys`` and ``window`` set
    what ``sort_by`` ranks the heads' differences by. A shape mismatch raises ``ValueError``
    naming both.
    """
    _headless()
    if sort_by is None:
        _unused_statistics(sink_keys, window, "diff computes only with sort_by")
    call = _options(locals())
    sides = []
    for x in (a, b):
        side = {"arrays": [], "stacked": False, "bf16": False, "q": None, "k": None,
                "qk_bf16": None, "qk": None, "source": None}
        _check_batch("attnviz.diff", x, None, batch)
        side["source"] = _file_source("attnviz.diff", x, tensor, call, _qk_defaults())
        if side["source"] is not None:
            pass
        elif isinstance(x, Capture):
            # (its attention recomputed with its own settings, as `attnviz diff` does a file's)
            qk = _qk_defaults()
            side["q"], side["k"], side["qk_bf16"] = _qk_inputs(x, None, qk, {"tokens": None})
            side["qk"] = qk
        else:
            side["arrays"], side["stacked"], side["bf16"] = _prepare(x, batch)
        sides.append(side)
    image, causal_applied, adapter, warning, _, layout, svg = _attnviz._diff(sides[0], sides[1],
                                                                             call)
    _warn_cpu(warning)
    return Figure(image, causal_applied, adapter, layout, svg)


def view(
    attn,
    k=None,
    *,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    scale="linear",
    log_floor=None,
    clip=None,
    vmin=None,
    vmax=None,
    center=None,
    symmetric=False,
    axes=None,
    sort_by=None,
    top=None,
    pattern=None,
    exclude_keys=None,
    title=None,
    scale_factor=1.0,
    dpi=None,
    theme="light",
    transparent=False,
    sink_keys=None,
    window=None,
    batch=0,
    tokens=None,
    tensor=None,
    queries=None,
    values="probs",
    softmax_scale=None,
    sliding_window=None,
    attention_chunk=None,
    softcap=None,
    bidirectional_spans=None,
    size=None,
    focus=None,
    zoom=None,
    exit_after_frames=None,
    screenshot=None,
):
    """Opens the interactive viewer on ``attn`` and blocks until its window is closed: what
    ``attnviz view`` opens, with its options as keywords.

    attn: what :class:`attnviz.Viewer` takes: arrays as :func:`render` takes them (read in
        place while the window is open), a file path (``.npy``, ``.safetensors`` with
        ``tensor=``), queries with ``k`` keys (as :func:`render_qk` takes them), an
        :class:`attnviz.Capture`, or a capture's file, whose attention is recomputed.
    The figure's keywords are :func:`render`'s (``scale``, ``clip``, ``sort_by``, ``top``,
    ``theme``, ...); ``sink_keys`` and ``window`` set what the statistics count whenever the
    viewer ranks by them (``sort_by``, or the ``o`` key). ``queries``, ``values``,
    ``softmax_scale``, ``sliding_window``, ``attention_chunk``, ``softcap`` and
    ``bidirectional_spans`` are
    :func:`render_qk`'s (``queries``
    of stored attention too: only those rows, keeping their places). Then ``tokens`` (one
    string per token, named in the hover readout), ``size`` ((width, height) of the window),
    ``focus`` ((layer, head), 1-based: open on that head), ``zoom`` (then zoom by this factor),
    ``exit_after_frames`` and ``screenshot`` (a PNG of the last frame). Returns ``{"adapter",
    "frames", "frame_ms"}`` (frame time min, median, p99).

    The window's event loop must run on the main thread (a plain script or a Jupyter kernel's
    cells qualify), and the windowing library allows one event loop per process: a second
    ``view`` in the same process raises ``RuntimeError``. Keys and mouse as in ``attnviz view``.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("attnviz.view must be called from the main thread")
    options = _options(locals())
    qk = _qk_options(locals())
    shown = _viewer_input("attnviz.view", attn, k, tensor, batch, options, qk)
    script = {
        **_opening(size, focus, zoom),
        "exit_after_frames": exit_after_frames,
        "screenshot": None if screenshot is None else os.fspath(screenshot),
    }
    if isinstance(shown, tuple):
        arrays, stacked, bf16 = shown
        adapter, frames, frame_ms = _attnviz._view(options, script, arrays=arrays,
                                                   stacked=stacked, bf16=bf16,
                                                   queries=qk["queries"])
    else:
        adapter, frames, frame_ms = _attnviz._view(options, script, source=shown)
    return {"adapter": adapter, "frames": frames, "frame_ms": frame_ms}


def _qk_defaults(queries=None):
    """The Q/K keywords at their defaults (a capture's own settings apply), but ``queries``."""
    return _qk_options(dict(queries=queries, values="probs", softmax_scale=None,
                            sliding_window=None, attention_chunk=None, softcap=None,
                            bidirectional_spans=None))


def _file_source(where, attn, tensor, options, qk, k=None):
    """``attn`` as the file the CLI reads when it is a path and no keys ``k`` come with it (an
    ``_attnviz._Source``: a capture's file recomputed with the Q/K keywords in ``qk``, else a
    tensor file read in place, only ``qk["queries"]`` rows where given); None for anything
    else, which ``tensor`` cannot name into. Stored attention given a keyword of recomputed
    attention raises ``ValueError``."""
    if k is not None or not isinstance(attn, (str, bytes, os.PathLike)):
        if tensor is not None:
            raise ValueError("tensor: names a tensor of a .safetensors file given as attn; "
                             "attn is not a path here")
        return None
    path = os.fsdecode(attn)
    if tensor is None and _attnviz._is_capture(path):
        return _attnviz._Source.from_capture(path, options, qk)
    _stored_only(where, qk)
    return _attnviz._Source.from_file(path, None if tensor is None else str(tensor),
                                      qk["queries"])


def _viewer_input(where, attn, k, tensor, batch, options, qk):
    """What ``Viewer`` and ``view`` show, opened in the same ways: an ``_attnviz._Source`` for
    queries and keys (``k``, or a Capture), a capture's file, or a file path; for arrays,
    ``(arrays, stacked, bf16)``, which ``view`` reads in place and ``Viewer`` copies. Stored
    attention given a keyword of recomputed attention raises ``ValueError``."""
    _headless()
    _check_batch(where, attn, k, batch)
    source = _file_source(where, attn, tensor, options, qk, k)
    if source is not None:
        return source
    if isinstance(attn, Capture) or k is not None:
        qa, ka, bf16 = _qk_inputs(attn, k, qk, options)
        return _attnviz._Source.from_qk(qa, ka, bf16, options, qk)
    # Stored attention is read as stored.
    _stored_only(where, qk)
    return _prepare(attn, batch)


# Each keyword's default where a caller (``view``) leaves it out: the CLI's.
_DEFAULTS = dict(out=None, layers=None, heads=None, norm="head", colormap="viridis", reduce="max",
                 cell=None, causal="auto", colorbar=True, scale="linear", log_floor=None,
                 clip=None, vmin=None, vmax=None, center=None, symmetric=False, axes=None,
                 sort_by=None, top=None, pattern=None,
                 exclude_keys=None, title=None, tokens=None,
                 scale_factor=1.0, dpi=None, theme="light", transparent=False, tiles=None,
                 stats_json=None, sink_keys=None, window=None, backend="auto")


def _labels(pattern):
    """``pattern=`` in the CLI's syntax: a label, a comma-separated string of them, or a list
    (or any iterable) of labels, joined with commas; the extension checks each."""
    if pattern is None:
        return None
    if isinstance(pattern, str):
        return pattern
    try:
        labels = list(pattern)
    except TypeError:
        raise ValueError(f"pattern: expected a label or a list of labels, got {pattern!r}") from None
    if not labels or not all(isinstance(l, str) for l in labels):
        raise ValueError(f"pattern: expected a label or a list of labels, got {pattern!r}")
    return ",".join(labels)


def _options(kw):
    """The dict of render keywords the extension reads (``PyOptions``), checked and in the
    CLI's syntax, from a function's ``locals()``."""
    o = dict(_DEFAULTS)
    o.update((k, v) for k, v in kw.items() if k in _DEFAULTS)
    if ("stats_json" in kw and o["stats_json"] is None and o["sort_by"] is None
            and o["pattern"] is None):
        # (a figure computes the statistics only for stats_json, sort_by or pattern)
        _unused_statistics(o["sink_keys"], o["window"],
                           "a figure computes only with stats_json, sort_by or pattern")
    return {
        "out": _path(o["out"]),
        "layers": _selection(o["layers"], "layers"),
        "heads": _selection(o["heads"], "heads"),
        "norm": _str(o["norm"], "norm"),
        "colormap": _str(o["colormap"], "colormap"),
        "reduce": _str(o["reduce"], "reduce"),
        "cell": None if o["cell"] is None else _int(o["cell"], "cell"),
        "causal": _causal(o["causal"]),
        "colorbar": bool(o["colorbar"]),
        "scale": _str(o["scale"], "scale"),
        "log_floor": _float(o["log_floor"], "log_floor"),
        "clip": _clip(o["clip"]),
        "vmin": _float(o["vmin"], "vmin"),
        "vmax": _float(o["vmax"], "vmax"),
        "center": _float(o["center"], "center"),
        "symmetric": bool(o["symmetric"]),
        "axes": _axes(o["axes"]),
        "sort_by": None if o["sort_by"] is None else _str(o["sort_by"], "sort_by"),
        "top": None if o["top"] is None else _int(o["top"], "top"),
        "pattern": _labels(o["pattern"]),
        "exclude_keys": _exclude(o["exclude_keys"]),
        "title": None if o["title"] is None else str(o["title"]),
        "tokens": _tokens(o["tokens"]),
        # (None: the default, as for dpi)
        "scale_factor": 1.0 if o["scale_factor"] is None else _float(o["scale_factor"],
                                                                     "scale_factor"),
        "dpi": _float(o["dpi"], "dpi"),
        "theme": _str(o["theme"], "theme"),
        "transparent": bool(o["transparent"]),
        "tiles": _path(o["tiles"], "tiles"),
        "stats_json": _path(o["stats_json"], "stats_json"),
        "sink_keys": 1 if o["sink_keys"] is None else _int(o["sink_keys"], "sink_keys"),
        "window": 32 if o["window"] is None else _int(o["window"], "window"),
        "backend": _str(o["backend"], "backend"),
    }


def _unused_statistics(sink_keys, window, computes):
    """``sink_keys`` or ``window`` given where nothing computes the statistics they define is
    refused, as the CLI refuses ``--sink-keys``, rather than left unused; ``computes`` says
    when something would."""
    given = [name for name, v in (("sink_keys", sink_keys), ("window", window)) if v is not None]
    if given:
        raise ValueError(f"{given[0]} sets what the head statistics count, which {computes}")


def _qk_options(kw):
    """The dict of Q/K keywords the extension reads (``PyQkOptions``); ``meta`` is filled in by
    ``_render_qk``."""
    softcap = _float(kw["softcap"], "softcap")
    window, chunk = kw["sliding_window"], kw["attention_chunk"]
    return {
        "queries": _queries(kw["queries"]),
        "softmax_scale": _float(kw["softmax_scale"], "softmax_scale"),
        "sliding_window": None if window is None else _int(window, "sliding_window"),
        "attention_chunk": None if chunk is None else _int(chunk, "attention_chunk"),
        "softcap": softcap,
        "bidirectional_spans": _spans(kw["bidirectional_spans"]),
        "values": _str(kw["values"], "values"),
        "meta": None,
    }


def _spans(spans):
    """``bidirectional_spans`` (pairs ``(s, e)`` of integers) in the CLI's ``S:E,S:E``
    syntax, whose parser checks them as it checks ``--bidirectional-spans``; None as None."""
    if spans is None:
        return None
    if isinstance(spans, (str, bytes)) or not hasattr(spans, "__iter__"):
        raise ValueError("bidirectional_spans: expected pairs (start, end), not {!r}".format(
            spans))
    pairs = []
    for span in spans:
        if isinstance(span, (str, bytes)) or not hasattr(span, "__len__") or len(span) != 2:
            raise ValueError("bidirectional_spans: {!r} is not a pair (start, end)".format(span))
        pairs.append("{}:{}".format(*(_int(v, "bidirectional_spans") for v in span)))
    if not pairs:
        raise ValueError("bidirectional_spans: no spans given (leave it out for none)")
    return ",".join(pairs)


def _render(attn, batch, options, queries=None, tensor=None):
    _headless()
    _check_batch("attnviz.render", attn, None, batch)
    if isinstance(attn, Capture):
        # Its attention, recomputed (as render_qk with its defaults): what `attnviz render
        # capture.safetensors`, heads(capture) and diff take a capture for.
        if tensor is not None:
            raise ValueError("tensor: names a tensor of a file; a capture is its Q and K")
        return _render_qk(attn, None, _qk_defaults(queries), options)
    source = _file_source("attnviz.render", attn, tensor, options, _qk_defaults(queries))
    if source is not None:
        image, causal_applied, adapter, warning, addresses, layout, svg = (
            _attnviz._render_source(source, options))
        _warn_cpu(warning)
        return Figure(image, causal_applied, adapter, layout, svg)
    arrays, stacked, bf16 = _prepare(attn, batch)
    image, causal_applied, adapter, warning, addresses, layout, svg = _attnviz._render(
        arrays, stacked, bf16, "attn", options, _queries(queries))
    _warn_cpu(warning)
    fig = Figure(image, causal_applied, adapter, layout, svg)
    # Where each layer was read from: the tests check it is the caller's memory.
    fig._source_addresses = addresses
    return fig


def _qk_inputs(q, k, qk, options):
    """Queries and keys as the extension takes them (two contiguous arrays, or two lists of one
    array per layer, and their bf16 flags), from ``q`` and ``k`` (arrays, or lists of layers)
    or from an :class:`attnviz.Capture` in ``q`` (its layers), whose settings go into
    ``qk["meta"]``, or from the path of a capture's file in ``q`` (loaded as a Capture).
    Shared by render_qk, figure_qk, heads and Viewer."""
    if isinstance(q, (str, bytes, os.PathLike)) and k is None:
        q = Capture.load(q)
    if isinstance(q, Capture):
        if k is not None:
            raise ValueError("k: a capture holds its own keys; pass the capture alone")
        # A capture's tokens travel in its metadata, which drops them when they do not fit
        # (a `queries` slice), as a capture file's do.
        qk["meta"] = q.metadata(options.get("tokens"))
        options["tokens"] = None
        # One array per layer, as the capture holds them: the extension copies them once, side
        # by side (stacking them here first, as ``tensors()`` does, would hold them once more).
        q, k = q.q, q.k
    elif k is None:
        raise ValueError("k: missing (or pass an attnviz.Capture as q)")
    lists = [isinstance(x, (list, tuple)) for x in (q, k)]
    if any(lists):
        if not all(lists):
            raise ValueError("{}: a list of layers, and {} one array: give both as lists of one "
                             "(H, N, d) array per layer, or both as arrays".format(
                                 *(("q", "k") if lists[0] else ("k", "q"))))
        qa, q_bf16 = _layer_arrays(q, "q")
        ka, k_bf16 = _layer_arrays(k, "k")
        return qa, ka, (q_bf16, k_bf16)
    qa, q_bf16 = _to_numpy(q, "q")
    ka, k_bf16 = _to_numpy(k, "k")
    return _contiguous(qa), _contiguous(ka), (q_bf16, k_bf16)


def _layer_arrays(layers, name, pick=None):
    """A list of per-layer arrays as the extension takes it (one contiguous array each, after
    ``pick(array, its name)`` where given, and whether they hold bfloat16 bits), checked to be
    non-empty and all of one kind; the extension checks their shapes."""
    if len(layers) == 0:
        raise ValueError("{}: holds no layers".format(name))
    arrays, kinds = [], []
    for i, layer in enumerate(layers):
        layer_name = "{}[{}]".format(name, i)
        a, bf16 = _to_numpy(layer, layer_name)
        if pick is not None:
            a = pick(a, layer_name)
        arrays.append(_contiguous(a))
        kinds.append(bf16)
    if any(kinds) and not all(kinds):
        i = kinds.index(not kinds[0])
        raise ValueError("{}[{}]: {} unlike {}[0] ({})".format(
            name, i, _kind(kinds[i]), name, _kind(kinds[0])))
    return arrays, kinds[0]


def _opening(size, focus, zoom):
    """The opening view ``view`` and ``Viewer`` share, checked: (width, height), the 1-based
    (layer, head) to focus, a zoom factor."""
    return {
        "size": None if size is None else (_int(size[0], "size"), _int(size[1], "size")),
        "focus": None if focus is None else (_int(focus[0], "focus"), _int(focus[1], "focus")),
        "zoom": None if zoom is None else _float(zoom, "zoom"),
    }


def _render_qk(q, k, qk, options):
    _headless()
    qa, ka, bf16 = _qk_inputs(q, k, qk, options)
    image, causal_applied, adapter, warning, _, layout, svg = _attnviz._render_qk(
        qa, ka, bf16, options, qk)
    _warn_cpu(warning)
    return Figure(image, causal_applied, adapter, layout, svg)


def _stored_only(function, qk):
    """Stored attention is read as stored: a softcap, window, scale or value kind the caller
    expects applied is refused, not silently left out (as `attnviz heads FILE --softcap C`
    is). ``qk``: the Q/K keywords as ``_qk_options`` holds them (None where left out, values
    "probs" by default)."""
    given = [name for name in ("values", "softmax_scale", "sliding_window", "attention_chunk",
                               "softcap", "bidirectional_spans")
             if qk[name] not in (None, "probs")]
    if given:
        raise ValueError(f"{function}: {given[0]} applies only to attention recomputed from "
                         "queries and keys (k=, a Capture or its file), not to stored attention")


def _queries(queries):
    """``queries`` in the CLI's ``A..B`` syntax."""
    if queries is None or isinstance(queries, str):
        return queries
    if isinstance(queries, (slice, range)):
        if queries.step not in (None, 1):
            raise ValueError("queries: a step is not supported")
        a, b = queries.start, queries.stop
    elif isinstance(queries, tuple) and len(queries) == 2:
        a, b = queries
    else:
        raise ValueError("queries: expected \"A..B\", (A, B), slice(A, B) or range(A, B), not "
                         "{!r}".format(queries))
    return "{}..{}".format("" if a is None else _int(a, "queries"),
                           "" if b is None else _int(b, "queries"))


def _headless():
    if sys.platform.startswith("linux") and "XDG_RUNTIME_DIR" not in os.environ:
        # As the CLI does for headless commands: Mesa's Wayland code otherwise prints
        # "error: XDG_RUNTIME_DIR is invalid", which reads like an error of ours.
        import tempfile

        os.environ["XDG_RUNTIME_DIR"] = tempfile.gettempdir()


def _warn_cpu(warning):
    """The CPU fallback's warning, once per process (the missing adapter is remembered)."""
    global _warned_cpu
    if warning is not None and not _warned_cpu:
        _warned_cpu = True
        warnings.warn(warning, RuntimeWarning, stacklevel=4)


def _prepare(attn, batch):
    """(arrays, stacked, bf16): C-contiguous numpy views of the input, one per layer for lists."""
    if isinstance(attn, (list, tuple)):
        batch = _int(batch, "batch") if len(attn) else batch

        def pick(a, name):
            if a.ndim == 4:
                if not 0 <= batch < a.shape[0]:
                    raise ValueError("{}: batch {} is out of range for shape {}".format(
                        name, batch, tuple(a.shape)))
                return a[batch]
            if batch != 0:
                raise ValueError("{}: batch={} picks an item of (batch, H, Q, K) layers; this "
                                 "layer is {} and has none".format(name, batch, tuple(a.shape)))
            return a

        arrays, bf16 = _layer_arrays(attn, "attn", pick)
        return arrays, False, bf16
    a, bf16 = _to_numpy(attn, "attn")
    return [_contiguous(a)], True, bf16


def _check_batch(where, attn, k, batch):
    """``batch`` picks an item of per-layer (batch, H, Q, K) tensors, as ``outputs.attentions``
    holds them (``_prepare`` checks each layer). Anywhere else it would be ignored, so any batch
    but 0 raises, naming what was given instead."""
    if k is None and isinstance(attn, (list, tuple)):
        return
    if _is_int(batch) and batch == 0:
        return
    if k is not None or isinstance(attn, Capture):
        what = "queries and keys (a capture holds one batch item: attnviz.capture(batch=))"
    elif isinstance(attn, (str, bytes, os.PathLike)):
        what = "a file"
    else:
        what = "one stacked array (index it: attn[batch])"
    raise ValueError("{}: batch={!r} picks an item of per-layer (batch, H, Q, K) tensors, as "
                     "outputs.attentions holds them; {} has no batch axis".format(
                         where, batch, what))


def _kind(bf16):
    return "bfloat16" if bf16 else "not bfloat16"


def _to_numpy(x, name):
    """A numpy view of ``x`` (no copy for numpy arrays and CPU torch tensors) and whether it
    holds bfloat16 bits (as uint16: numpy has no bfloat16). float64 (numpy's default) is
    narrowed to float32 once, as the CLI narrows a float64 ``.npy`` as it reads it: the one
    copy, half the input's size."""
    a, bf16 = _numpy_view(x, name)
    if a.dtype == np.float64 and a.dtype.byteorder in "=<":
        return a.astype(np.float32), bf16
    return a, bf16


def _numpy_view(x, name):
    if isinstance(x, np.ndarray):
        return x, False
    if isinstance(x, _BF16Bits):  # a loaded capture's bfloat16 layer
        return x.bits, True
    if isinstance(x, (str, bytes, os.PathLike)):
        # (numpy would take a name for a 0-d string array and fail on its dtype)
        raise ValueError(
            "{}: got the string {!r}, where an array goes: a file is read from its path as "
            "attn (render, figure, heads, diff, view, Viewer) or as q alone (a capture's file), "
            "or loaded first: np.load(path, mmap_mode='r'), attnviz.Capture.load(path)"
            .format(name, os.fsdecode(x)))
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):  # torch.Tensor
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()  # the one unavoidable copy
        if str(t.dtype) == "torch.bfloat16":
            import torch

            return t.view(torch.int16).numpy().view(np.uint16), True
        return t.numpy(), False
    try:
        return np.asarray(x), False
    except Exception as e:  # noqa: BLE001 (any failure to read the object is bad input)
        raise ValueError("{}: cannot read a {} as an array ({})".format(
            name, type(x).__name__, e)) from None


def _contiguous(a):
    """``a`` itself when it can be read in place, else one C-contiguous copy."""
    if a.flags.c_contiguous and a.flags.aligned:
        return a
    return np.ascontiguousarray(a)


def _selection(sel, what):
    if sel is None or isinstance(sel, str):
        return sel
    if _is_int(sel):
        return str(int(sel))
    try:
        return ",".join(str(_int(s, what)) for s in sel)
    except TypeError:
        raise ValueError("{}: expected a selection such as \"1,8\" or \"1-4\", an int or a list "
                         "of ints, not {}".format(what, type(sel).__name__)) from None


def _causal(causal):
    if causal is True:
        return "on"
    if causal is False:
        return "off"
    if not isinstance(causal, str):
        raise ValueError("causal: expected True, False or \"auto\", not {!r}".format(causal))
    return causal


def _int(v, what):
    if not _is_int(v):
        raise ValueError("{}: expected an integer, not {!r}".format(what, v))
    v = int(v)
    # (the extension takes a 64-bit integer and checks its own bounds; past 64 bits, say so
    # here, not as the TypeError of a failed conversion)
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError("{}: {} is out of range".format(what, v))
    return v


def _float(v, what):
    """A number (int, float, numpy scalar) as a float, None as None."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
        raise ValueError("{}: expected a number, not {!r}".format(what, v))
    return float(v)


def _str(v, what):
    if not isinstance(v, str):
        raise ValueError("{}: expected a string, not {!r}".format(what, v))
    return v


def _path(p, what="out"):
    if p is None:
        return None
    try:
        return os.fspath(p)
    except TypeError:
        raise ValueError("{}: expected a path, not {!r}".format(what, p)) from None


def _clip(clip):
    """``clip`` in the CLI's ``LOW,HIGH`` syntax."""
    if clip is None or isinstance(clip, str):
        return clip
    try:
        lo, hi = clip
    except (TypeError, ValueError):
        raise ValueError("clip: expected (LOW, HIGH) percentiles or \"LOW,HIGH\", not "
                         "{!r}".format(clip)) from None
    return "{},{}".format(_float(lo, "clip"), _float(hi, "clip"))


def _exclude(keys):
    """``exclude_keys`` in the CLI's ``0..K`` syntax."""
    if keys is None or isinstance(keys, str):
        return keys
    if isinstance(keys, range):
        if keys.start != 0 or keys.step != 1:
            raise ValueError("exclude_keys: expected range(0, K), not {!r}".format(keys))
        return "0..{}".format(keys.stop)
    k = _int(keys, "exclude_keys")
    if k < 0:
        raise ValueError("exclude_keys: {} is negative".format(k))
    return "0..{}".format(k)


def _tokens(tokens):
    if tokens is None:
        return None
    if isinstance(tokens, str):
        raise ValueError("tokens: expected a list of strings (one per key), not a string")
    try:
        return [str(t) for t in tokens]
    except TypeError:
        raise ValueError("tokens: expected a list of strings (one per key), not {!r}".format(
            tokens)) from None


def _axes(axes):
    """``axes`` as the CLI's ``on``/``off``, None for the default."""
    if axes is None or axes in ("on", "off"):
        return axes
    if isinstance(axes, bool):
        return "on" if axes else "off"
    raise ValueError("invalid value {!r} for axes [possible values: on, off, True, False]".format(
        axes))
