"""The Python package against the CLI: same data, same options, same pixels; same errors."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import attnviz
from attnviz import _attnviz
from conftest import PNG_SIGNATURE, read_png, read_png_file, run_cli


def attention(shape, seed=0, causal=False, dtype=np.float32):
    """Softmax rows with a sink column and a diagonal, so every head has structure."""
    rng = np.random.default_rng(seed)
    *lead, q, k = shape
    logits = rng.normal(size=shape).astype(np.float32)
    logits[..., :, 0] += 3.0
    logits[..., np.arange(min(q, k)), np.arange(min(q, k))] += 2.0
    if causal:
        logits = np.where(np.tri(q, k, dtype=bool), logits, -np.inf)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(dtype)


def cli_pixels(cli, tmp_path, array, *args):
    """Saves `array` as .npy, renders it with the CLI and returns (pixels, PNG bytes)."""
    npy, png = tmp_path / "cli.npy", tmp_path / "cli.png"
    np.save(npy, array)
    code, err = run_cli(cli, "render", npy, "-o", png, "--quiet", *args)
    assert code == 0, err
    return read_png_file(png), png.read_bytes()


OPTION_CASES = [
    ({}, []),
    (
        dict(layers="2", heads=[1, 3], norm="global", colormap="magma", reduce="mean", cell=24,
             colorbar=False),
        ["--layers", "2", "--heads", "1,3", "--norm", "global", "--colormap", "magma",
         "--reduce", "mean", "--cell", "24", "--no-colorbar"],
    ),
    (dict(norm="row", causal="off", layers=1), ["--norm", "row", "--causal", "off", "--layers", "1"]),
]


@pytest.mark.parametrize("kwargs,args", OPTION_CASES)
def test_numpy_matches_cli(cli, tmp_path, kwargs, args):
    a = attention((2, 3, 40, 56))
    want, want_png = cli_pixels(cli, tmp_path, a, *args)
    out = tmp_path / "py.png"
    got = attnviz.render(a, out=out, **kwargs)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # Same pixels through the same encoder: the files are identical too.
    assert out.read_bytes() == want_png


@pytest.mark.parametrize("shape", [(48, 48), (4, 48, 48)])
def test_lower_ranks_and_f16_match_cli(cli, tmp_path, shape):
    a = attention(shape, seed=1, dtype=np.float16)
    want, _ = cli_pixels(cli, tmp_path, a)
    np.testing.assert_array_equal(attnviz.render(a), want)


def test_huggingface_layers_match_cli(cli, tmp_path):
    """`outputs.attentions`: one (batch, H, Q, K) array per layer, read in place, not stacked."""
    layers = [attention((1, 4, 32, 32), seed=s, causal=True) for s in range(3)]
    want, _ = cli_pixels(cli, tmp_path, np.stack([l[0] for l in layers]))
    fig = attnviz.figure(tuple(layers))
    np.testing.assert_array_equal(fig.image, want)
    assert fig.causal, "the causal mask is detected as by the CLI"
    assert fig._source_addresses == [l.ctypes.data for l in layers], "each layer read in place"


def test_huggingface_batch_item(cli, tmp_path):
    layers = [attention((2, 2, 24, 24), seed=s) for s in range(2)]
    want, _ = cli_pixels(cli, tmp_path, np.stack([l[1] for l in layers]), "--heads", "2")
    fig = attnviz.figure(layers, batch=1, heads=2)
    np.testing.assert_array_equal(fig.image, want)
    assert fig._source_addresses == [l[1].ctypes.data for l in layers]


def test_array_likes_are_read_in_place():
    """Objects with `__array__` (torch CPU tensors among them) hand over their memory."""
    a = attention((2, 32, 32))

    class Tensor:
        def __array__(self, dtype=None, copy=None):
            return a

    fig = attnviz.figure(Tensor())
    assert fig._source_addresses == [a.ctypes.data]
    np.testing.assert_array_equal(fig.image, attnviz.render(a))


class FakeTensor:
    """The parts of a CPU torch.Tensor that attnviz touches (torch is too big to install here)."""

    def __init__(self, a):
        self._a = a
        self.device = type("Device", (), {"type": "cpu"})()
        self.dtype = "torch.float32"

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self._a


def test_torch_like_layers_are_read_in_place(cli, tmp_path):
    layers = [attention((1, 2, 24, 24), seed=s) for s in range(2)]
    want, _ = cli_pixels(cli, tmp_path, np.stack([l[0] for l in layers]))
    fig = attnviz.figure(tuple(FakeTensor(l) for l in layers))
    np.testing.assert_array_equal(fig.image, want)
    assert fig._source_addresses == [l.ctypes.data for l in layers]


def test_bfloat16_bits_match_cli(cli, tmp_path):
    """bfloat16 (torch's, handed over as uint16 bits) against the CLI reading a raw bf16 dump."""
    f = attention((2, 32, 40), seed=4)
    bits = ((f.view(np.uint32) + 0x8000) >> 16).astype(np.uint16)  # round to nearest
    raw, png = tmp_path / "a.bf16", tmp_path / "cli.png"
    bits.tofile(raw)
    code, err = run_cli(cli, "render", raw, "--shape", "2,32,40", "--dtype", "bf16", "-o", png)
    assert code == 0, err
    # every keyword at its default
    image = attnviz._attnviz._render([bits], True, True, "attn", attnviz._options({}))[0]
    np.testing.assert_array_equal(image, read_png_file(png))


def test_non_contiguous_is_copied_once_and_renders_the_same():
    a = attention((2, 40, 40))
    t = np.swapaxes(a, 1, 2)  # a transposed view: not C-contiguous
    fig = attnviz.figure(t)
    np.testing.assert_array_equal(fig.image, attnviz.render(np.ascontiguousarray(t)))


def test_cpu_backend_matches_gpu():
    a = attention((2, 2, 64, 48), seed=3)
    np.testing.assert_array_equal(attnviz.render(a, backend="cpu"), attnviz.render(a))


def qk_pair(q_shape, k_shape, seed=5, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=q_shape).astype(dtype), rng.normal(size=k_shape).astype(dtype))


@pytest.mark.parametrize(
    "kwargs,args",
    [
        ({}, []),
        (dict(causal=True, softmax_scale=0.5, queries=(8, 40), norm="layer"),
         ["--causal", "--softmax-scale", "0.5", "--queries", "8..40", "--norm", "layer"]),
        (dict(queries=slice(16, None), heads="2-3", cell=20), ["--queries", "16..", "--heads", "2-3",
                                                               "--cell", "20"]),
    ],
)
def test_qk_matches_cli(cli, tmp_path, kwargs, args):
    """Attention recomputed from Q and K (grouped-query: 4 query heads on 2 key heads)."""
    q, k = qk_pair((2, 4, 48, 16), (2, 2, 64, 16))
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "k.npy", k)
    png = tmp_path / "cli.png"
    code, err = run_cli(cli, "render", "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "-o",
                        png, "--quiet", *args)
    assert code == 0, err
    out = tmp_path / "py.png"
    got = attnviz.render_qk(q, k, out=out, **kwargs)
    np.testing.assert_array_equal(got, read_png_file(png))
    assert out.read_bytes() == png.read_bytes()


def test_qk_lists_of_layers_render_as_the_stacked_arrays():
    """Per-layer Q and K, as hooks collect them, draw what the stacked arrays draw (the layers
    copied side by side, never stacked in Python); bf16 torch layers too."""
    q, k = qk_pair((3, 4, 40, 16), (3, 2, 40, 16))
    want = attnviz.render_qk(q, k, causal=True)
    got = attnviz.render_qk(list(q), tuple(k), causal=True)
    np.testing.assert_array_equal(got, want)
    assert attnviz.heads(list(q), k=list(k)) == attnviz.heads(q, k=k)
    torch = pytest.importorskip("torch")
    qt, kt = torch.from_numpy(q).bfloat16(), torch.from_numpy(k).bfloat16()
    np.testing.assert_array_equal(attnviz.render_qk(list(qt), list(kt)),
                                  attnviz.render_qk(qt, kt))


@pytest.mark.parametrize(
    "q,k,fragment",
    [
        ("list", "array", "q: a list of layers, and k one array"),
        ("array", "list", "k: a list of layers, and q one array"),
        ("empty", "list", "q: holds no layers"),
        ("unlike", "list", "q[1]: "),
        ("2d", "list", "q[0]: array has 2 dimensions (expected (H, N, d) per layer)"),
    ],
)
def test_qk_lists_of_layers_are_checked(q, k, fragment):
    qs, ks = qk_pair((2, 4, 16, 8), (2, 2, 16, 8))
    inputs = {"list": list(qs), "array": qs, "empty": [], "unlike": [qs[0], qs[1, :2]],
              "2d": [qs[0, 0], qs[1, 0]]}
    kin = {"list": list(ks), "array": ks}[k]
    with pytest.raises(ValueError) as e:
        attnviz.render_qk(inputs[q], kin)
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    "q_shape,k_shape,kwargs,args",
    [
        ((2, 4, 16, 8), (2, 2, 16, 4), {}, []),
        ((2, 3, 16, 8), (2, 2, 16, 8), {}, []),
        ((1, 2, 16, 8), (1, 2, 16, 8), dict(queries="9..3"), ["--queries", "9..3"]),
        ((1, 2, 16, 8), (1, 2, 16, 8), dict(queries="x"), ["--queries", "x"]),
    ],
)
def test_qk_bad_inputs_raise_the_cli_message(cli, tmp_path, q_shape, k_shape, kwargs, args):
    q, k = qk_pair(q_shape, k_shape)
    qp, kp = tmp_path / "q.npy", tmp_path / "k.npy"
    np.save(qp, q)
    np.save(kp, k)
    code, err = run_cli(cli, "render", "--q", qp, "--k", kp, "-o", tmp_path / "x.png", *args)
    assert code == 2, err
    want = err.strip()[len("error: "):].replace(str(qp), "q").replace(str(kp), "k")
    want = _attnviz._python_message(want)
    with pytest.raises(ValueError) as e:
        attnviz.render_qk(q, k, **kwargs)
    assert str(e.value) == want


def cli_error(cli, tmp_path, array, *args):
    npy = tmp_path / "bad.npy"
    np.save(npy, array)
    code, err = run_cli(cli, "render", npy, "-o", tmp_path / "bad.png", *args)
    assert code == 2, err
    line = err.strip()
    assert line.count("\n") == 0, err
    return line[len("error: "):].replace(str(npy), "attn")


BAD_ARRAYS = {
    "five_dim": np.zeros((1, 1, 1, 4, 4), np.float32),
    "one_dim": np.zeros(4, np.float32),
    "empty": np.zeros((2, 0, 4), np.float32),
    "int": np.zeros((4, 4), np.int32),
    "bool": np.zeros((4, 4), bool),
    "big_endian": np.zeros((4, 4), ">f4"),
}


@pytest.mark.parametrize("name", sorted(BAD_ARRAYS))
def test_bad_arrays_raise_the_cli_message(cli, tmp_path, name):
    a = BAD_ARRAYS[name]
    want = cli_error(cli, tmp_path, a)
    with pytest.raises(ValueError) as e:
        attnviz.render(a)
    assert str(e.value) == want


def test_float64_is_narrowed_as_the_cli_narrows_a_float64_file(cli, tmp_path):
    """numpy's default dtype: the CLI narrows a float64 .npy to float32 as it reads it, Python
    narrows the array once; both draw what float32 draws, and list the same statistics."""
    rng = np.random.default_rng(7)
    a = rng.random((2, 2, 40, 40))
    a /= a.sum(-1, keepdims=True)
    npy = tmp_path / "a64.npy"
    np.save(npy, a)
    out = tmp_path / "cli.png"
    code, err = run_cli(cli, "render", npy, "-o", out, "--quiet")
    assert code == 0, err
    image = attnviz.render(a)
    assert np.array_equal(image, read_png_file(out))
    assert np.array_equal(image, attnviz.render(a.astype(np.float32)))
    assert attnviz.heads(a) == attnviz.heads(a.astype(np.float32))


@pytest.mark.parametrize(
    "kwargs,args",
    [
        (dict(layers="3"), ["--layers", "3"]),
        (dict(heads="2-1"), ["--heads", "2-1"]),
        (dict(layers=0), ["--layers", "0"]),
        (dict(cell=0), ["--cell", "0"]),
        (dict(cell=100000), ["--cell", "100000"]),
    ],
)
def test_bad_options_raise_the_cli_message(cli, tmp_path, kwargs, args):
    """The CLI's message, its flag named as the keyword the caller passed."""
    a = attention((2, 2, 16, 16))
    want = cli_error(cli, tmp_path, a, *args)
    assert args[0] in want
    with pytest.raises(ValueError) as e:
        attnviz.render(a, **kwargs)
    assert str(e.value) == _attnviz._python_message(want)
    assert args[0] not in str(e.value) and next(iter(kwargs)) in str(e.value)


@pytest.mark.parametrize(
    "attn,kwargs,fragment",
    [
        ([], {}, "attn: holds no layers"),
        ([np.zeros((1, 2, 8, 8), np.float32), np.zeros((1, 2, 8, 9), np.float32)], {},
         "attn[1]: f32 of shape [2, 8, 9] unlike attn[0] (f32 of shape [2, 8, 8])"),
        ([np.zeros((1, 2, 8, 8), np.float32)], dict(batch=1),
         "attn[0]: batch 1 is out of range for shape (1, 2, 8, 8)"),
        ([np.zeros((8, 8), np.float32)], {}, "attn[0]: array has 2 dimensions (expected (batch, H, Q, K)"),
        # torch.stack(outputs.attentions): (L, batch, H, Q, K), the batch axis named
        (np.zeros((2, 1, 2, 8, 8), np.float32), {}, "attn: array has 5 dimensions (expected 2 "
         "to 4: (Q,K), (H,Q,K) or (L,H,Q,K)): an (L, batch, H, Q, K) stack, as "
         "torch.stack(outputs.attentions) makes, holds a batch axis; take one item, attn[:, b] "
         "(or, in Python, pass outputs.attentions itself: batch=b picks the item)"),
        # batch= where there is no batch axis: it was ignored, and the first item drawn
        (np.zeros((2, 2, 8, 8), np.float32), dict(batch=1),
         "attnviz.render: batch=1 picks an item of per-layer (batch, H, Q, K) tensors, as "
         "outputs.attentions holds them; one stacked array (index it: attn[batch]) has no "
         "batch axis"),
        ([np.zeros((2, 8, 8), np.float32)], dict(batch=1),
         "attn[0]: batch=1 picks an item of (batch, H, Q, K) layers; this layer is (2, 8, 8)"),
        ("not attention", dict(batch=2), "attnviz.render: batch=2 picks an item of per-layer "
         "(batch, H, Q, K) tensors, as outputs.attentions holds them; a file has no batch axis"),
        (np.zeros((8, 8), np.float32), dict(norm="softmax"),
         "invalid value 'softmax' for norm [possible values: head, layer, global, row, none]"),
        (np.zeros((8, 8), np.float32), dict(colormap="jet"), "invalid value 'jet' for colormap"),
        (np.zeros((8, 8), np.float32), dict(causal="maybe"), "invalid value 'maybe' for causal"),
        (np.zeros((8, 8), np.float32), dict(backend="tpu"), "invalid value 'tpu' for backend"),
        (np.zeros((8, 8), np.float32), dict(layers=[1.5]), "layers: expected an integer"),
        # (a string is a path: render reads files as the CLI does)
        ("not attention", {}, "not attention: No such file or directory"),
    ],
)
def test_bad_python_inputs_raise_value_error(attn, kwargs, fragment):
    with pytest.raises(ValueError) as e:
        attnviz.render(attn, **kwargs)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_unwritable_output_is_a_runtime_error(tmp_path):
    out = tmp_path / "missing" / "g.png"
    with pytest.raises(RuntimeError, match="cannot write output"):
        attnviz.render(np.zeros((8, 8), np.float32), out=out)
    assert not out.exists()


def test_figure_names_must_say_png_or_svg(tmp_path):
    # PNG bytes under a .jpg name would lie: refused before rendering, as the CLI refuses it
    out = tmp_path / "g.jpg"
    with pytest.raises(ValueError, match=r"g\.jpg: cannot write a \.jpg figure"):
        attnviz.render(np.zeros((8, 8), np.float32), out=out)
    with pytest.raises(ValueError, match="cannot write a .tiff figure"):
        attnviz.heads(np.zeros((8, 8), np.float32), figure=tmp_path / "h.tiff")
    fig = attnviz.figure(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="cannot write a .jpg figure"):
        fig.save(tmp_path / "f.jpg")
    with pytest.raises(ValueError, match="this figure holds no SVG"):
        fig.save(tmp_path / "f.svg")
    assert list(tmp_path.iterdir()) == []
    # a figure rendered to SVG saves its document under another .svg name
    fig = attnviz.figure(np.zeros((8, 8), np.float32), out=tmp_path / "a.svg")
    fig.save(tmp_path / "b.svg")
    assert (tmp_path / "b.svg").read_text() == fig.svg


def test_repr_png_and_save(tmp_path):
    fig = attnviz.figure(attention((2, 2, 32, 32)))
    png = fig._repr_png_()
    assert isinstance(png, bytes) and png.startswith(PNG_SIGNATURE)
    np.testing.assert_array_equal(read_png(png), fig.image)
    fig.save(tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes() == png
    assert (fig.width, fig.height) == (fig.image.shape[1], fig.image.shape[0])
    assert repr(fig).startswith("<attnviz.Figure {}x{}".format(fig.width, fig.height))


def test_gil_is_released_while_rendering():
    """Another Python thread keeps running while a figure renders: with the GIL held it could
    not tick at all inside the call."""
    import threading
    import time

    a = attention((1, 2048, 2048))
    attnviz.render(a[:, :64, :64].copy())  # the adapter is opened outside the timed call
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.002)

    t = threading.Thread(target=tick)
    t.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        attnviz.render(a)
        end = time.perf_counter()
    finally:
        done.set()
        t.join()
    inside = [x for x in ticks if start < x < end]
    assert len(inside) >= 3, "{} ticks in a {:.3f} s render".format(len(inside), end - start)


ZERO_COPY = textwrap.dedent(
    """
    import numpy as np, attnviz, attnviz._attnviz as native

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise SystemExit("no " + key)

    # Opens the adapter once, and compiles the pool kernel a 2048-key head takes into 256-px
    # cells (pipelines are compiled on first use, and a compile's memory is not a copy).
    attnviz.render(np.ones((64, 2048), np.float32))
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)  # 16 MiB, resident
    # Small upload chunks, so the engine's own staging cannot hide a 16 MiB copy of the input.
    native._set_chunk_bytes(1 << 20)
    with open("/proc/self/clear_refs", "w") as f:       # peak RSS := current RSS
        f.write("5")
    before = status("VmRSS")
    fig = attnviz.figure(a)
    peak = status("VmHWM")
    assert fig._source_addresses == [a.ctypes.data]
    print(peak - before, a.nbytes)
    """
)


def test_2048_head_renders_without_copying_the_array():
    p = subprocess.run([sys.executable, "-c", ZERO_COPY], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    grew, nbytes = map(int, p.stdout.split())
    print("peak RSS grew by {:.2f} MiB rendering a {:.0f} MiB head".format(grew / 2**20, nbytes / 2**20))
    assert grew < nbytes / 2, "peak RSS grew by {} bytes for a {}-byte array".format(grew, nbytes)


VIEW = textwrap.dedent(
    """
    import sys, numpy as np, attnviz
    layers = [np.random.default_rng(s).random((1, 2, 64, 64), dtype=np.float32) for s in range(2)]
    # Bad input is refused before the process's one window is asked for.
    try:
        attnviz.view(layers, tokens=["a", "b"])
    except ValueError as e:
        assert str(e).startswith("tokens: 2 tokens"), e
    else:
        raise AssertionError("tokens that do not fit must raise ValueError")
    try:
        attnviz.view(layers, focus=(3, 1))
    except ValueError as e:
        assert "focus=3,1: that head is not among the selected cells" in str(e), e
    else:
        raise AssertionError("a head that is not there must raise ValueError")
    # (rows 10..40 of each head, as `attnviz view --queries 10..40` shows them)
    r = attnviz.view(layers, exit_after_frames=3, screenshot=sys.argv[1], size=(320, 240),
                     focus=(2, 1), zoom=2.0, queries=(10, 40))
    try:
        attnviz.view(layers, exit_after_frames=1)
    except RuntimeError as e:
        assert "one window per process" in str(e), e
    else:
        raise AssertionError("a second view in the process must raise RuntimeError")
    print(r["frames"], r["adapter"])
    """
)


def test_view_off_the_main_thread_is_a_runtime_error():
    import threading

    errors = []

    def run():
        try:
            attnviz.view(np.zeros((8, 8), np.float32), exit_after_frames=1)
        except RuntimeError as e:
            errors.append(str(e))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors == ["attnviz.view must be called from the main thread"]


def test_view_opens_the_window(tmp_path):
    """Needs a display: CI runs pytest under xvfb-run."""
    shot = tmp_path / "shot.png"
    p = subprocess.run([sys.executable, "-c", VIEW, str(shot)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "3"
    assert read_png_file(shot).shape == (240, 320, 4)


VIEW_QK = textwrap.dedent(
    """
    import sys, numpy as np, attnviz
    rng = np.random.default_rng(0)
    q, k = (rng.standard_normal((2, 2, 96, 16)).astype(np.float32) for _ in range(2))
    np.save(sys.argv[2], q)
    np.save(sys.argv[3], k)
    attnviz.view(q, k, causal=True, sort_by="entropy", top=3, theme="dark", scale="sqrt",
                 exit_after_frames=3, screenshot=sys.argv[1], size=(320, 240))
    """
)


def test_view_takes_queries_and_keys_and_the_figures_keywords(cli, tmp_path):
    """attnviz.view opens what `attnviz view` opens for the same queries, keys and flags (the
    window's screenshots are equal): it takes Viewer's inputs and render's keywords."""
    shot, q, k = tmp_path / "py.png", tmp_path / "q.npy", tmp_path / "k.npy"
    p = subprocess.run([sys.executable, "-c", VIEW_QK, str(shot), str(q), str(k)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    native = tmp_path / "cli.png"
    code, err = run_cli(cli, "view", "--q", q, "--k", k, "--causal", "--sort-by", "entropy",
                        "--top", "3", "--theme", "dark", "--scale", "sqrt", "--size", "320x240",
                        "--exit-after-frames", "3", "--screenshot", native)
    assert code == 0, err
    np.testing.assert_array_equal(read_png_file(shot), read_png_file(native))


def test_diff_matches_cli(cli, tmp_path):
    """`attnviz.diff(a, b)` draws what `attnviz diff A B` draws (A − B on the GPU, RdBu_r,
    signed-extreme pooling, symmetric about 0 per head), reading both arrays in place."""
    a = attention((2, 3, 40, 56), seed=3)
    b = attention((2, 3, 40, 56), seed=4, dtype=np.float16)
    pa, pb, png = tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "d.png"
    np.save(pa, a)
    np.save(pb, b)
    for kwargs, args in [({}, []), (dict(cell=24, norm="global", reduce="mean", center=0.01),
                                    ["--cell", "24", "--norm", "global", "--reduce", "mean",
                                     "--center", "0.01"]),
                         # every render keyword, as the CLI's diff takes every render flag
                         (dict(clip=(1, 99), title="l1 − l2", axes=True, scale_factor=1.5,
                               theme="dark", sort_by="sink_mass", sink_keys=8, top=4,
                               tiles=tmp_path / "pt"),
                          ["--clip", "1,99", "--title", "l1 − l2", "--axes", "on",
                           "--scale-factor", "1.5", "--theme", "dark", "--sort-by", "sink_mass",
                           "--sink-keys", "8", "--top", "4", "--tiles", tmp_path / "ct"])]:
        code, err = run_cli(cli, "diff", pa, pb, "-o", png, "--quiet", *args)
        assert code == 0, err
        fig = attnviz.diff(a, b, out=tmp_path / "py.png", **kwargs)
        np.testing.assert_array_equal(fig.image, read_png_file(png))
        assert (tmp_path / "py.png").read_bytes() == png.read_bytes()
    tiles = sorted(p.name for p in (tmp_path / "ct").iterdir())
    assert len(tiles) == 4 and tiles == sorted(p.name for p in (tmp_path / "pt").iterdir())


def test_diff_shape_mismatch_is_a_value_error():
    a = attention((2, 40, 56))
    with pytest.raises(ValueError, match=r"a has shape .* but b has"):
        attnviz.diff(a, attention((2, 56, 40)))
    # (the statistics' options rank by sort_by; without it they would change nothing)
    with pytest.raises(ValueError, match="^window sets what the head statistics count"):
        attnviz.diff(a, a, window=8)
    # batch= picks an item of per-layer lists; a stacked array has none to pick, in every entry
    for call in (lambda **k: attnviz.diff(a, a, **k), lambda **k: attnviz.heads(a, **k),
                 lambda **k: attnviz.heads(a, k=a, **k)):
        with pytest.raises(ValueError, match="batch=1 picks an item of per-layer"):
            call(batch=1)


def test_a_file_name_where_an_array_goes_says_what_to_do():
    """A path where only an array can go (keys beside queries, a layer of a list) is said to be
    one, with how to read the file, rather than read as a string array ("dtype '<U8' is not
    supported"). Where attention goes, a path is the file (test_files_are_read_from_their_paths
    in test_options.py)."""
    for call in (lambda p: attnviz.render_qk(p, p), lambda p: attnviz.render([p])):
        for path in ("attn.npy", Path("attn.npy")):
            with pytest.raises(ValueError, match=r"got the string 'attn.npy'.*mmap_mode"):
                call(path)
