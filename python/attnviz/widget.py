"""``attnviz.Viewer``: the interactive viewer as a Jupyter widget, on jupyter_rfb.

The kernel side is a viewer session of the Rust library (``attnviz::viewer::Session``, the one
the native window runs): the same scene, stages and keys, drawn into an offscreen target. This
class only translates jupyter_rfb's event dicts (logical pixels, the web's key names) into the
session's events (physical pixels), and hands the session's frames to jupyter_rfb, which sends
them to the browser. A frame is drawn only when the session says something changed.
"""

import asyncio
import os

from jupyter_rfb import RemoteFrameBuffer

from . import _attnviz

# jupyter_rfb reports wheel deltas in logical pixels; a browser's wheel notch is 100 of them
# (Chromium, Firefox in pixel mode): one notch is one line of the native viewer, a 1.2× step.
WHEEL_PIXELS_PER_LINE = 100.0

# How often the kernel looks at the session's worker while it reads (detail, readout, figure).
_POLL_SECONDS = 0.03


class Viewer(RemoteFrameBuffer):
    """The interactive viewer in a notebook: drag to pan, wheel to zoom about the cursor (down
    to single entries, recomputed exactly for what is visible), click a head to focus it,
    arrows to step, Esc to return, ``c``/``n``/``r`` to recolour (colormap, normalization,
    max/mean) without reading the input again, and the hover readout in the bottom-left corner.

    ``attn`` is anything :func:`attnviz.render` takes (a numpy array or torch tensor, HF
    ``outputs.attentions``), a file path (``.npy``, ``.safetensors`` with ``tensor=``, read in
    place), queries with ``k=`` keys (arrays, or lists of one (H, N, d) array per layer), or an
    :class:`attnviz.Capture`. Arrays are copied once into
    memory the viewer owns (pass a file for inputs too large for that). ``size`` is the frame in
    pixels (default: the figure, within 1600×1000), ``focus`` a 1-based (layer, head) to open on,
    ``zoom`` a factor about the centre after that, ``queries`` (``"A..B"``, a slice or range)
    only those query rows of any input, keeping their places. A path to a Q/K capture's file
    (``Capture.save``, ``attnviz synth-qk``) is viewed as its attention, recomputed.
    ``values``, ``softmax_scale``, ``sliding_window``, ``attention_chunk``, ``softcap`` and
    ``bidirectional_spans`` apply to queries and keys
    only, and stored attention given them raises ``ValueError``. Other keywords are
    :func:`attnviz.view`'s: every flag of ``attnviz view`` (the figure's are
    :func:`attnviz.render`'s, ``scale=``, ``clip=``, ``sort_by=``, ``top=``, ``theme=``, ...),
    but those that script or close the native window.
    """

    def __init__(
        self,
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
        tokens=None,
        batch=0,
        size=None,
        focus=None,
        zoom=None,
        tensor=None,
        queries=None,
        values="probs",
        softmax_scale=None,
        sliding_window=None,
        attention_chunk=None,
        softcap=None,
        bidirectional_spans=None,
        **widget_kwargs,
    ):
        import attnviz as _a

        options = _a._options(locals())
        opening = _a._opening(size, focus, zoom)
        qk = _a._qk_options(locals())
        shown = _a._viewer_input("attnviz.Viewer", attn, k, tensor, batch, options, qk)
        if isinstance(shown, tuple):
            # (arrays are copied once: the widget outlives this call)
            shown = _attnviz._Source.from_arrays(*shown, qk["queries"])
        session = _attnviz._Session(shown, options, opening)
        width, height = session.size
        widget_kwargs.setdefault("css_width", "{}px".format(width))
        widget_kwargs.setdefault("css_height", "{}px".format(height))
        widget_kwargs.setdefault("resizable", True)
        # The title bar shows the readout, as the native window's does.
        widget_kwargs.setdefault("has_titlebar", True)
        super().__init__(**widget_kwargs)
        self._session = session
        self._ratio = 1.0
        self._shown = None
        self._poll = None
        self._follow()

    # ----- jupyter_rfb's two methods

    def handle_event(self, event):
        """Applies one of jupyter_rfb's event dicts (``type`` or the older ``event_type``):
        resize, pointer_down/move/up, wheel, key_down; others are ignored."""
        kind = event.get("type", event.get("event_type"))
        s, r = getattr(self, "_session", None), getattr(self, "_ratio", 1.0)
        if s is None:
            return
        if kind == "resize":
            self._ratio = r = float(event.get("ratio", event.get("pixel_ratio", 1.0)))
            width = event.get("pwidth", round(event["width"] * r))
            height = event.get("pheight", round(event["height"] * r))
            s.resize(int(width), int(height), r)
        elif kind == "pointer_down":
            s.pointer_down(event["x"] * r, event["y"] * r, event.get("button") == 1)
        elif kind == "pointer_move":
            s.pointer_move(event["x"] * r, event["y"] * r)
        elif kind == "pointer_up":
            s.pointer_up(event["x"] * r, event["y"] * r, event.get("button") == 1)
        elif kind == "wheel":
            # The web's deltaY is positive scrolling down, which zooms out.
            s.wheel(event["x"] * r, event["y"] * r, -event["dy"] / WHEEL_PIXELS_PER_LINE)
        elif kind == "key_down":
            s.key(event["key"])
        elif kind == "close":
            # The browser closed the widget: the worker and the GPU resources go with the session.
            self._session = None
            return
        else:
            return
        self._follow()

    def get_frame(self):
        """The frame now, (H, W, 4) uint8, drawn by the engine offscreen; kept for ``save``."""
        if self._session is None:
            return None
        self._session.update()
        self._shown = self._session.render()
        return self._shown

    def close(self, *args, **kwargs):
        # A viewer whose input was refused never became a widget: nothing to close.
        if hasattr(self, "_output_context"):
            super().close(*args, **kwargs)

    # ----- the viewer's own

    def settle(self, timeout=60.0):
        """Waits (at most ``timeout`` seconds) until what the view asked the worker for is
        shown: the figure, the hovered entry's readout, a zoomed view's exact detail. True
        when it is. Scripts call it before they look at a frame."""
        done = self._session.settle(float(timeout))
        self._follow()
        return done

    def save(self, path):
        """Writes the frame shown (the last one sent to the browser, else the frame now) to a
        PNG, exactly."""
        frame = self._shown if self._shown is not None else self._session.render()
        _attnviz._save_figure(os.fspath(path), frame)

    @property
    def readout(self):
        """The hover readout shown (layer, head, q, k, tokens, value), or None."""
        return self._session.readout

    @property
    def focused(self):
        """The focused (layer, head), 1-based, or None in grid mode."""
        return self._session.focus

    @property
    def reads(self):
        """How many times the input's rows were read: recolouring reads none."""
        return self._session.reads

    @property
    def adapter(self):
        return self._session.adapter

    def _follow(self):
        """Asks jupyter_rfb for a draw when the frame changed, and keeps looking at the worker
        while it reads (on the kernel's event loop; without one, ``settle`` does that)."""
        if self._session.dirty():
            self.request_draw()
        title = self._session.title
        if self.title != title:
            self.title = title
        if self._poll is None and self._session.busy():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._poll = loop.call_later(_POLL_SECONDS, self._on_poll)

    def _on_poll(self):
        self._poll = None
        if self._session is not None:
            self._session.update()
            self._follow()
