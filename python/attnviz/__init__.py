"""Transformer attention maps rendered on the GPU, straight from numpy, torch and HuggingFace.

    import attnviz
    out = model(**inputs, output_attentions=True)
    attnviz.figure(out.attentions)            # a notebook cell shows the grid inline

``render`` returns the figure as an (H, W, 4) uint8 numpy array (and writes ``out`` as PNG when
given); ``figure`` returns a :class:`Figure` (``.image``, ``.save(path)``, ``_repr_png_``);
``render_qk`` / ``figure_qk`` recompute the attention from queries and keys on the GPU; ``view``
opens the interactive window. Options and defaults are the command line's
(``attnviz render --help``).

Inputs are read where they are: a C-contiguous numpy array or CPU torch tensor is never copied
(anything else is copied once), the per-layer tensors of ``outputs.attentions`` are never
stacked, and the GIL is released while the GPU works. Bad input raises ``ValueError`` with the
command line's one-line message; GPU and environment problems raise ``RuntimeError``.
"""

import json
import os
import sys
import threading
import warnings

import numpy as np

from . import _attnviz

from .capture import Capture, capture

__all__ = ["render", "figure", "render_qk", "figure_qk", "diff", "view", "capture", "Capture",
           "Figure", "NORMS", "COLORMAPS", "REDUCES"]
__version__ = "0.1.0"

NORMS = tuple(_attnviz.NORMS)
COLORMAPS = tuple(_attnviz.COLORMAPS)
REDUCES = tuple(_attnviz.REDUCES)

_warned_cpu = False


class Figure:
    """A rendered attention grid.

    Attributes: ``image`` (H, W, 4) uint8 RGBA, top row first; ``width``, ``height``;
    ``causal`` (entries above the diagonal were masked, asked for or detected); ``adapter``
    (the GPU that drew it, or ``"CPU"`` for the reference renderer).
    """

    def __init__(self, image, causal, adapter):
        self.image = image
        self.causal = causal
        self.adapter = adapter

    @property
    def width(self):
        return self.image.shape[1]

    @property
    def height(self):
        return self.image.shape[0]

    def to_png(self):
        """The figure as PNG bytes."""
        return _attnviz._encode_png(self.image)

    def save(self, path):
        """Writes the figure as a PNG file (atomically: no partial file on failure)."""
        _attnviz._write_png(os.fspath(path), self.image)

    def _repr_png_(self):
        return self.to_png()

    def __repr__(self):
        return "<attnviz.Figure {}x{}{} ({})>".format(
            self.width, self.height, ", causal" if self.causal else "", self.adapter
        )


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
    batch=0,
    backend="auto",
):
    """Renders attention as a labelled grid and returns it as an (H, W, 4) uint8 array.

    attn: (L, H, Q, K), (H, Q, K) or (Q, K) float32/float16 (numpy array, CPU torch tensor, or
        anything ``np.asarray`` reads), or a list/tuple with one (batch, H, Q, K) or (H, Q, K)
        tensor per layer, as HuggingFace returns ``outputs.attentions``.
    out: also write the figure to this PNG file.
    layers, heads: 1-based selection, ``"1,8"``, ``"1-4"``, an int or a list of ints (default
        all).
    norm: "head" (default), "layer", "global", "row" or "none".
    colormap: "viridis" (default), "magma", "inferno", "plasma", "cividis", "turbo", "gray".
    reduce: how entries sharing a pixel combine: "max" (default), "mean" or "min".
    cell: cell side in pixels (default 256, or the native size when smaller).
    causal: "auto" (mask above the diagonal when every head is zero there), "on"/True,
        "off"/False.
    colorbar: draw the colorbar right of the grid.
    batch: the batch item to show from per-layer (batch, H, Q, K) tensors.
    backend: "auto" (GPU, the CPU renderer with a warning when there is no adapter), "gpu" or
        "cpu".
    """
    return _render(attn, out, layers, heads, norm, colormap, reduce, cell, causal, colorbar,
                   batch, backend).image


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
    batch=0,
    backend="auto",
):
    """Like :func:`render`, but returns a :class:`Figure`, which a notebook shows inline."""
    return _render(attn, out, layers, heads, norm, colormap, reduce, cell, causal, colorbar,
                   batch, backend)


def render_qk(
    q,
    k=None,
    out=None,
    *,
    tokens=None,
    queries=None,
    values="probs",
    softmax_scale=None,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    backend="auto",
):
    """Renders the attention ``softmax(softmax_scale · Q Kᵀ)`` recomputed on the GPU from
    queries and keys, as ``attnviz render --q --k`` does: never stored, so heads far longer than
    memory would hold as probabilities render. Returns an (H, W, 4) uint8 array.

    q: (L, H, N_q, d), (H, N_q, d) or (N_q, d) float32/float16/bfloat16; k: (L, H_kv, N_k, d)
        with H a multiple of H_kv (grouped-query attention). Copied once (they are N·d, not N²).
        Or q is an :class:`attnviz.Capture` and k is omitted: its layers' scales, sliding
        windows, softcaps, causality and sink logits apply, as they do from its file.
    tokens: one string per position, to label the axes (with a capture).
    values: "probs" (default), or "logits": the pre-softmax scores ``scale · q·k`` (softcapped
        where the layer is), in logit units, hidden entries masked.
    queries: the query rows to compute, 0-based, end excluded: ``"A..B"``, ``(A, B)``,
        ``slice(A, B)`` or ``range(A, B)`` (default all).
    softmax_scale: default 1/√d.
    causal: "on"/True hides each query's later keys (bottom-right aligned, as in decoders);
        "auto" (default) and "off" compute full attention.
    The other options are :func:`render`'s.
    """
    return _render_qk(q, k, out, queries, softmax_scale, layers, heads, norm, colormap, reduce,
                      cell, causal, colorbar, backend, tokens, values).image


def figure_qk(
    q,
    k=None,
    out=None,
    *,
    tokens=None,
    queries=None,
    values="probs",
    softmax_scale=None,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    backend="auto",
):
    """Like :func:`render_qk`, but returns a :class:`Figure`."""
    return _render_qk(q, k, out, queries, softmax_scale, layers, heads, norm, colormap, reduce,
                      cell, causal, colorbar, backend, tokens, values)


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
    batch=0,
    backend="auto",
):
    """Renders the difference ``a − b`` of two attention inputs of the same shape (two prompts,
    two checkpoints, before and after fine-tuning), as ``attnviz diff A B`` does, and returns a
    :class:`Figure`. The subtraction runs on the GPU as both inputs stream; neither is copied.

    a, b: as :func:`render`'s ``attn`` (each may be a per-layer list); any float dtypes.
    reduce: "extreme" (default: the signed value of largest magnitude in each pixel), "mean",
        "max" or "min".
    colormap: "RdBu_r" (default) or any of ``COLORMAPS``.
    center: the value drawn white; limits are symmetric about it (default 0) per ``norm`` scope,
        as matplotlib's ``CenteredNorm``.
    causal: as :func:`render`'s; "auto" masks above the diagonal where every head of the
        difference is exactly zero there (two causal models).
    The other options are :func:`render`'s. A shape mismatch raises ``ValueError`` naming both.
    """
    _headless()
    sides = []
    for x in (a, b):
        arrays, stacked, bf16 = _prepare(x, batch)
        sides.append({"arrays": arrays, "stacked": stacked, "bf16": bf16})
    if center is not None:
        if isinstance(center, bool) or not isinstance(center, (int, float, np.number)):
            raise ValueError("center: expected a number, not {!r}".format(center))
        center = float(center)
    call = {
        "out": None if out is None else os.fspath(out),
        "layers": _selection(layers, "layers"),
        "heads": _selection(heads, "heads"),
        "norm": norm,
        "colormap": colormap,
        "reduce": reduce,
        "cell": None if cell is None else _int(cell, "cell"),
        "causal": _causal(causal),
        "colorbar": bool(colorbar),
        "center": center,
        "backend": backend,
    }
    image, causal_applied, adapter, warning, _ = _attnviz._diff(sides[0], sides[1], call)
    _warn_cpu(warning)
    return Figure(image, causal_applied, adapter)


def view(
    attn,
    *,
    layers=None,
    heads=None,
    norm="head",
    colormap="viridis",
    reduce="max",
    cell=None,
    causal="auto",
    colorbar=True,
    batch=0,
    tokens=None,
    size=None,
    focus=None,
    zoom=None,
    exit_after_frames=None,
    screenshot=None,
):
    """Opens the interactive viewer on ``attn`` and blocks until its window is closed.

    Takes the inputs and options of :func:`render`, plus ``tokens`` (one string per token, named
    in the hover readout), ``size`` ((width, height) of the window), ``focus`` ((layer, head),
    1-based: open on that head), ``zoom`` (then zoom by this factor), ``exit_after_frames`` and
    ``screenshot`` (a PNG of the last frame). Returns ``{"adapter", "frames", "frame_ms"}``
    (frame time min, median, p99).

    The window's event loop must run on the main thread (a plain script or a Jupyter kernel's
    cells qualify), and the windowing library allows one event loop per process: a second
    ``view`` in the same process raises ``RuntimeError``. Keys and mouse as in ``attnviz view``.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("attnviz.view must be called from the main thread")
    arrays, stacked, bf16 = _prepare(attn, batch)
    adapter, frames, frame_ms = _attnviz._view(
        arrays, stacked, bf16, "attn", _selection(layers, "layers"), _selection(heads, "heads"),
        norm, colormap, reduce, cell, _causal(causal), colorbar,
        None if tokens is None else [str(t) for t in tokens],
        None if size is None else (int(size[0]), int(size[1])),
        None if focus is None else (_int(focus[0], "focus"), _int(focus[1], "focus")),
        None if zoom is None else float(zoom),
        exit_after_frames,
        None if screenshot is None else os.fspath(screenshot),
    )
    return {"adapter": adapter, "frames": frames, "frame_ms": frame_ms}


def _render(attn, out, layers, heads, norm, colormap, reduce, cell, causal, colorbar, batch,
            backend):
    _headless()
    arrays, stacked, bf16 = _prepare(attn, batch)
    image, causal_applied, adapter, warning, addresses = _attnviz._render(
        arrays, stacked, bf16, "attn", None if out is None else os.fspath(out),
        _selection(layers, "layers"), _selection(heads, "heads"), norm, colormap, reduce,
        None if cell is None else _int(cell, "cell"), _causal(causal), bool(colorbar), backend,
    )
    _warn_cpu(warning)
    fig = Figure(image, causal_applied, adapter)
    # Where each layer was read from: the tests check it is the caller's memory.
    fig._source_addresses = addresses
    return fig


def _render_qk(q, k, out, queries, softmax_scale, layers, heads, norm, colormap, reduce, cell,
               causal, colorbar, backend, tokens=None, values="probs"):
    _headless()
    meta = None
    if isinstance(q, Capture):
        if k is not None:
            raise ValueError("k: a capture holds its own keys; pass the capture alone")
        meta = q.metadata(tokens)
        q, k = q.tensors()
    elif k is None:
        raise ValueError("k: missing (or pass an attnviz.Capture as q)")
    elif tokens is not None:
        meta = '{{"tokens": {}}}'.format(json.dumps([str(t) for t in tokens]))
    qa, q_bf16 = _to_numpy(q, "q")
    ka, k_bf16 = _to_numpy(k, "k")
    if softmax_scale is not None:
        if isinstance(softmax_scale, bool) or not isinstance(softmax_scale, (int, float, np.number)):
            raise ValueError("softmax_scale: expected a number, not {!r}".format(softmax_scale))
        softmax_scale = float(softmax_scale)
    image, causal_applied, adapter, warning, _ = _attnviz._render_qk(
        _contiguous(qa), _contiguous(ka), (q_bf16, k_bf16),
        None if out is None else os.fspath(out), _queries(queries), softmax_scale,
        _selection(layers, "layers"), _selection(heads, "heads"), norm, colormap, reduce,
        None if cell is None else _int(cell, "cell"), _causal(causal), bool(colorbar), backend,
        meta, values,
    )
    _warn_cpu(warning)
    return Figure(image, causal_applied, adapter)


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
        if len(attn) == 0:
            raise ValueError("attn: holds no layers")
        batch = _int(batch, "batch")
        arrays, kinds = [], []
        for i, layer in enumerate(attn):
            name = "attn[{}]".format(i)
            a, bf16 = _to_numpy(layer, name)
            if a.ndim == 4:
                if not 0 <= batch < a.shape[0]:
                    raise ValueError("{}: batch {} is out of range for shape {}".format(
                        name, batch, tuple(a.shape)))
                a = a[batch]
            arrays.append(_contiguous(a))
            kinds.append(bf16)
        if any(kinds) and not all(kinds):
            i = kinds.index(not kinds[0])
            raise ValueError("attn[{}]: {} unlike attn[0] ({})".format(
                i, _kind(kinds[i]), _kind(kinds[0])))
        return arrays, False, kinds[0]
    a, bf16 = _to_numpy(attn, "attn")
    return [_contiguous(a)], True, bf16


def _kind(bf16):
    return "bfloat16" if bf16 else "not bfloat16"


def _to_numpy(x, name):
    """A numpy view of ``x`` (no copy for numpy arrays and CPU torch tensors) and whether it
    holds bfloat16 bits (as uint16: numpy has no bfloat16)."""
    if isinstance(x, np.ndarray):
        return x, False
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
    if isinstance(sel, (int, np.integer)):
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
    return causal


def _int(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError("{}: expected an integer, not {!r}".format(what, v))
    return int(v)
