"""attnviz.Viewer, the notebook widget, driven as jupyter_rfb drives it: event dicts into
``handle_event``, frames out of ``get_frame``. Its behaviour is the native viewer's (one Rust
session serves both), so after the same focus, zoom, pan and hover its frame equals the
window's screenshot exactly."""

import inspect
import re
import subprocess

import numpy as np
import pytest

import attnviz
from conftest import ROOT, read_png, run_cli

DATA = ROOT / "tests" / "data" / "minilm_attn_128.npy"
SIZE = (640, 480)


def ev(kind, **fields):
    """An event dict as jupyter_rfb (1.x) hands it to ``handle_event``: the new keys and the
    old ones (``event_type``, ``time_stamp``) both."""
    event = {"type": kind, "event_type": kind, "timestamp": 0.0, "time_stamp": 0.0}
    if kind.startswith("pointer") or kind == "wheel":
        event.update(buttons=(), modifiers=(), ntouches=0, touches={})
    if kind == "key_down":
        event.update(modifiers=())
    event.update(fields)
    return event


def resize(w, h, ratio=1.0):
    return ev("resize", width=w / ratio, height=h / ratio, pwidth=w, pheight=h, ratio=ratio,
              pixel_ratio=ratio)


def click(widget, x, y):
    widget.handle_event(ev("pointer_move", x=x, y=y))
    widget.handle_event(ev("pointer_down", x=x, y=y, button=1, buttons=(1,)))
    widget.handle_event(ev("pointer_up", x=x, y=y, button=1, buttons=()))


def drag(widget, start, end):
    widget.handle_event(ev("pointer_down", x=start[0], y=start[1], button=1, buttons=(1,)))
    widget.handle_event(ev("pointer_move", x=end[0], y=end[1], button=0, buttons=(1,)))
    widget.handle_event(ev("pointer_up", x=end[0], y=end[1], button=1, buttons=()))


def test_focus_zoom_pan_and_hover_equal_the_native_viewers_screenshot(cli, tmp_path):
    w = attnviz.Viewer(str(DATA), size=SIZE)
    w.handle_event(resize(*SIZE))
    assert w.settle(120)
    centre = (SIZE[0] / 2, SIZE[1] / 2)
    # A click on the grid focuses the head under it.
    click(w, *centre)
    focused = w.focused
    assert focused is not None
    # Three wheel notches up (a notch is 100 logical pixels of deltaY): 1.2³ about the centre.
    w.handle_event(ev("wheel", x=centre[0], y=centre[1], dx=0.0, dy=-300.0))
    drag(w, centre, (centre[0] + 40, centre[1] + 25))
    hover = (200, 150)
    w.handle_event(ev("pointer_move", x=hover[0], y=hover[1]))
    assert w.settle(120)
    frame = w.get_frame()
    assert frame.shape == (SIZE[1], SIZE[0], 4) and frame.dtype == np.uint8

    png = tmp_path / "native.png"
    code, err = run_cli(
        cli, "view", DATA, "--size", "{}x{}".format(*SIZE),
        "--focus", "{},{}".format(*focused), "--zoom", repr(1.2 ** 3),
        "--pan-per-frame", "40,25", "--hover", "{},{}".format(*hover),
        "--exit-after-frames", "1", "--screenshot", png)
    assert code == 0, err
    native = read_png(png.read_bytes())
    assert native.shape == frame.shape
    differ = np.any(native != frame, axis=2)
    assert not differ.any(), "{} pixels differ, first at {}".format(
        differ.sum(), np.argwhere(differ)[0])

    # The readout names the entry under the pointer with the value in the file.
    m = re.fullmatch(r"l = (\d+) h = (\d+)  q (\d+) k (\d+) = (\S+)", w.readout)
    assert m, w.readout
    layer, head, q, k = (int(g) for g in m.groups()[:4])
    assert (layer, head) == focused
    a = np.load(DATA)
    # Six decimals of the mantissa, as the CLI's readout prints it.
    assert float(m.group(5)) == pytest.approx(float(a[layer - 1, head - 1, q, k]), rel=1e-6)

    # save writes exactly the frame shown.
    saved = tmp_path / "shown.png"
    w.save(saved)
    assert np.array_equal(read_png(saved.read_bytes()), frame)


def test_recolour_keys_change_the_frame_without_reading_the_input():
    # Cells of 64 pixels pool 2×2 entries, so max and mean (r) differ.
    w = attnviz.Viewer(str(DATA), size=SIZE, cell=64)
    w.handle_event(resize(*SIZE))
    assert w.settle(120)
    frame = w.get_frame()
    reads = w.reads
    assert reads > 0
    assert w._session.frame() is None, "a frame with nothing changed"
    for key in ["c", "n", "r"]:
        w.handle_event(ev("key_down", key=key))
        assert w._session.dirty(), key
        new = w.get_frame()
        assert not np.array_equal(new, frame), "{} left the frame as it was".format(key)
        assert w.reads == reads, "{} read the input again".format(key)
        frame = new


def test_escape_and_arrows_step_and_leave_the_focus():
    w = attnviz.Viewer(str(DATA), size=SIZE, focus=(2, 3))
    assert w.focused == (2, 3)
    w.handle_event(ev("key_down", key="ArrowRight"))
    w.handle_event(ev("key_down", key="ArrowDown"))
    assert w.focused == (3, 4)
    w.handle_event(ev("key_down", key="Escape"))
    assert w.focused is None


def test_every_input_render_takes_shows_the_same_grid():
    a = np.load(DATA)
    file = attnviz.Viewer(str(DATA), size=SIZE)
    stacked = attnviz.Viewer(a, size=SIZE)
    per_layer = attnviz.Viewer([layer[None] for layer in a], size=SIZE)  # outputs.attentions
    frames = []
    for w in (file, stacked, per_layer):
        assert w.settle(120)
        frames.append(w.get_frame())
    assert np.array_equal(frames[0], frames[1])
    assert np.array_equal(frames[0], frames[2])


def test_a_slice_of_stored_query_rows_keeps_their_places():
    a = np.load(DATA)
    whole = attnviz.Viewer(str(DATA), size=SIZE, focus=(1, 1))
    file = attnviz.Viewer(str(DATA), size=SIZE, focus=(1, 1), queries="100..128")
    array = attnviz.Viewer(a, size=SIZE, focus=(1, 1), queries=slice(100, 128))
    frames = []
    for w in (whole, file, array):
        assert w.settle(120)
        frames.append(w.get_frame())
    assert np.array_equal(frames[1], frames[2])
    assert not np.array_equal(frames[0], frames[1])
    # The rows under the pointer are named by their place in the head, not from 0.
    file.handle_event(ev("pointer_move", x=SIZE[0] // 2, y=SIZE[1] // 2))
    assert file.settle(120)
    row = re.match(r"l = 1 h = 1  q (\d+)", file.readout or "")
    assert row and 100 <= int(row.group(1)) < 128, file.readout
    # Options of queries and keys are refused for stored attention, not left out.
    with pytest.raises(ValueError, match="softcap"):
        attnviz.Viewer(a, softcap=30.0)
    with pytest.raises(ValueError, match="values"):
        attnviz.Viewer(str(DATA), values="logits")
    with pytest.raises(ValueError, match="128"):
        attnviz.Viewer(str(DATA), queries="200..300")


def test_a_capture_file_is_viewed_as_its_attention(cli, tmp_path):
    from safetensors.numpy import load_file

    path = tmp_path / "qk.safetensors"
    code, err = run_cli(cli, "synth-qk", "--seq", "64", "--heads", "2", "--dim", "16",
                        "--dtype", "f32", "-o", path)
    assert code == 0, err
    t = load_file(str(path))
    frames = []
    loaded = attnviz.Capture.load(path)  # a file with no capture metadata: every default
    assert loaded.tokens is None and len(loaded.layers) == 1
    for w in (attnviz.Viewer(str(path), size=SIZE), attnviz.Viewer(t["q"], t["k"], size=SIZE),
              attnviz.Viewer(path, size=SIZE, softcap=2.0), attnviz.Viewer(loaded, size=SIZE)):
        assert w.settle(120)
        frames.append(w.get_frame())
    assert np.array_equal(frames[0], frames[1])
    assert np.array_equal(frames[0], frames[3])
    # Q/K keywords apply to a capture's file, where stored attention refuses them.
    assert not np.array_equal(frames[0], frames[2])
    with pytest.raises(ValueError, match="softcap"):
        attnviz.Viewer(str(DATA), softcap=2.0)


def test_queries_and_keys_and_a_scaled_display():
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 2, 48, 16)).astype(np.float32)
    k = rng.standard_normal((2, 2, 48, 16)).astype(np.float32)
    w = attnviz.Viewer(q, k, size=(300, 200))
    # A display of 2 physical pixels per logical one: the frame follows the physical size.
    w.handle_event(resize(400, 300, ratio=2.0))
    assert w.settle(120)
    assert w.get_frame().shape == (300, 400, 4)
    w.handle_event(ev("pointer_move", x=100, y=75))
    assert w.settle(120)
    assert w.readout is None or w.readout.startswith("l = ")


def test_bad_input_is_a_value_error_naming_the_keyword():
    with pytest.raises(ValueError, match="focus"):
        attnviz.Viewer(str(DATA), focus=(0, 1))
    with pytest.raises(ValueError, match=r"^focus=9,1: that head is not among the selected"):
        attnviz.Viewer(str(DATA), focus=(9, 1))
    with pytest.raises(ValueError, match="missing.npy"):
        attnviz.Viewer(str(DATA.with_name("missing.npy")))
    # tokens that do not fit the input, as render refuses them (the readout named nothing)
    with pytest.raises(ValueError, match=r"^tokens: 2 tokens, but the input has 128"):
        attnviz.Viewer(str(DATA), tokens=["a", "b"])


def test_a_capture_is_viewed_with_its_tokens():
    import torch

    from test_capture import _inputs, _tiny

    model = _tiny("llama-gqa")
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(_inputs())
    n = cap.q[0].shape[1]
    tokens = ["t{}".format(i) for i in range(n)]
    w = attnviz.Viewer(cap, tokens=tokens, size=(320, 240), focus=(1, 1))
    w.handle_event(ev("pointer_move", x=160, y=120))
    assert w.settle(120)
    assert w.get_frame().shape == (240, 320, 4)
    # The readout names the capture's tokens (the view is magnified: one entry under the pointer).
    assert re.fullmatch(r"l = 1 h = 1  q (\d+) 't\1' k (\d+) 't\2' = \S+", w.readout), w.readout


# `attnviz view`'s flags that neither attnviz.view nor Viewer takes, and why.
CLI_ONLY = {
    "help": "clap's",
    "shape": "a raw dump: Python reads it with np.fromfile and passes the array",
    "dtype": "a raw dump, as --shape",
    "stats": "frame times: attnviz.view returns them always",
    "pan-per-frame": "scripted panning, for the CLI's frame-time measurements",
    "hover": "a scripted readout: a Viewer takes pointer events",
}
# ... and those only the blocking window takes: a widget stays open, and Viewer.save writes
# what it shows.
WINDOW_ONLY = {"exit-after-frames", "screenshot"}


def test_every_flag_of_attnviz_view_is_a_keyword(cli):
    """attnviz.view and attnviz.Viewer take what `attnviz view` takes (its figure keywords are
    render's), each flag as a keyword, but for the stated exceptions."""
    help_text = subprocess.run([str(cli), "view", "--help"], capture_output=True, text=True,
                               check=True).stdout
    flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z][a-z0-9-]*)", help_text, re.M))
    assert {"scale", "sort-by", "sink-keys", "q", "k", "tensor", "focus"} <= flags, flags
    renamed = {"q": "attn", "no-colorbar": "colorbar"}
    missing = []
    for f in (attnviz.view, attnviz.Viewer):
        params = inspect.signature(f).parameters
        for flag in sorted(flags - set(CLI_ONLY)):
            if f is attnviz.Viewer and flag in WINDOW_ONLY:
                continue
            name = renamed.get(flag, flag.replace("-", "_"))
            if name not in params:
                missing.append("{} (--{}) in {}".format(name, flag, f.__name__))
    assert not missing, missing


# The figure's flags beyond the grid's: a scale, limits, a ranking by statistics that
# --sink-keys defines, a title, axes and a theme.
FIGURE = [
    (dict(scale="sqrt", clip=(1, 99), sort_by="sink_mass", top=6, sink_keys=16,
          title="MiniLM ranked", axes=True, theme="dark"),
     ["--scale", "sqrt", "--clip", "1,99", "--sort-by", "sink_mass", "--top", "6",
      "--sink-keys", "16", "--title", "MiniLM ranked", "--axes", "on", "--theme", "dark"]),
    (dict(scale="log", log_floor=1e-3, exclude_keys=1, colormap="magma", scale_factor=1.5),
     ["--scale", "log", "--log-floor", "0.001", "--exclude-keys", "0..1", "--colormap",
      "magma", "--scale-factor", "1.5"]),
    # only the heads of two labels, as --pattern keeps them
    (dict(pattern=["local", "sink"]), ["--pattern", "local,sink"]),
]


@pytest.mark.parametrize("kwargs,flags", FIGURE)
def test_the_figures_keywords_draw_what_the_native_viewer_draws(cli, tmp_path, kwargs, flags):
    w = attnviz.Viewer(str(DATA), size=SIZE, **kwargs)
    assert w.settle(120)
    frame = w.get_frame()
    png = tmp_path / "native.png"
    code, err = run_cli(cli, "view", DATA, "--size", "{}x{}".format(*SIZE), *flags,
                        "--exit-after-frames", "1", "--screenshot", png)
    assert code == 0, err
    native = read_png(png.read_bytes())
    differ = np.any(native != frame, axis=2)
    assert not differ.any(), "{} pixels differ, first at {}".format(
        differ.sum(), np.argwhere(differ)[0])
    plain = attnviz.Viewer(str(DATA), size=SIZE)
    assert plain.settle(120)
    assert not np.array_equal(plain.get_frame(), frame), "the keywords changed nothing"


def test_keywords_the_viewer_cannot_use_are_value_errors():
    with pytest.raises(ValueError, match="tensor"):
        attnviz.Viewer(np.load(DATA), tensor="attn")
    q = np.zeros((1, 1, 8, 4), np.float32)
    with pytest.raises(ValueError, match="tensor"):
        attnviz.Viewer(q, q, tensor="q")
    with pytest.raises(ValueError, match="sink_keys"):
        attnviz.Viewer(str(DATA), sink_keys=0)
    with pytest.raises(ValueError, match="top"):
        attnviz.Viewer(str(DATA), top=3)


def test_a_screenshot_that_cannot_be_written_leaves_the_viewer_open(tmp_path, monkeypatch):
    """``s`` saves the frame in the working folder; where that fails (here the folder is gone)
    the title says why and the viewer goes on, rather than failing over a key press."""
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    w = attnviz.Viewer(str(DATA), size=SIZE)
    assert w.settle(120)
    w.handle_event(ev("key_down", key="s"))
    assert re.fullmatch(r"attnviz: .* — s: .*attnviz-\d+\.png.*", w.title), w.title
    w.handle_event(ev("key_down", key="c"))
    assert w.get_frame().shape == (SIZE[1], SIZE[0], 4)
