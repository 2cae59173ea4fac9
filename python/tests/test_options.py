"""Python at parity with `attnviz render`: every flag has a keyword (or a reason it has none),
the same options give the CLI's bytes, errors name keywords, small heads are magnified, and a
Figure shows itself in a notebook."""

import inspect
import json

import numpy as np
import pytest

import attnviz
from attnviz import _attnviz
from conftest import PNG_SIGNATURE, ROOT, read_png, read_png_file, run_cli
from test_attnviz import attention, qk_pair

FUNCTIONS = {
    "all": (attnviz.render, attnviz.figure, attnviz.render_qk, attnviz.figure_qk),
    "attention": (attnviz.render, attnviz.figure),
    "qk": (attnviz.render_qk, attnviz.figure_qk),
}


def test_every_option_of_the_table_is_a_keyword():
    """The table is the one list of render's flags (a Rust test checks it against clap): each
    keyword it names is in the signatures, each attribute on a Figure."""
    table = _attnviz.RENDER_OPTIONS
    assert len(table) > 30
    flags = [row[0] for row in table]
    assert {"--layers", "--scale", "--clip", "--tokens", "--tiles", "--output"} <= set(flags)
    fig = attnviz.figure(attention((1, 1, 8, 8)))
    missing = []
    for flag, kind, name, scope in table:
        if kind == "keyword":
            for f in FUNCTIONS[scope]:
                if name not in inspect.signature(f).parameters:
                    missing.append("{} ({}) in {}".format(name, flag, f.__name__))
        elif kind == "attribute":
            if not hasattr(fig, name):
                missing.append("Figure.{} ({})".format(name, flag))
        else:
            assert kind == "cli-only" and len(name) > 10, (flag, name)
    assert not missing, missing


def test_render_and_figure_share_their_keywords():
    def keywords(f):
        return [p for p in inspect.signature(f).parameters.values()
                if p.kind == p.KEYWORD_ONLY]

    assert keywords(attnviz.render) == keywords(attnviz.figure)
    assert keywords(attnviz.render_qk) == keywords(attnviz.figure_qk)


def cli_render(cli, tmp_path, array, out_name, *args):
    npy, out = tmp_path / "cli.npy", tmp_path / out_name
    np.save(npy, array)
    code, err = run_cli(cli, "render", npy, "-o", out, "--quiet", *args)
    assert code == 0, err
    return out


TOKENS = ["<s>", "the", "cat", "sat", "on", "a", "mat", "."]

PARITY = [
    (dict(tokens=TOKENS), ["--tokens", "TOKENS"]),
    (dict(scale="log"), ["--scale", "log"]),
    (dict(scale="log", log_floor=1e-3), ["--scale", "log", "--log-floor", "0.001"]),
    (dict(clip=(0, 99.5)), ["--clip", "0,99.5"]),
    (dict(clip="1,90", exclude_keys=1), ["--clip", "1,90", "--exclude-keys", "0..1"]),
    (dict(vmin=0.0, vmax=0.5, scale="sqrt"), ["--vmin", "0", "--vmax", "0.5", "--scale", "sqrt"]),
    (dict(title="MiniLM", theme="dark", transparent=True),
     ["--title", "MiniLM", "--theme", "dark", "--transparent"]),
    (dict(scale_factor=2, cell=16), ["--scale-factor", "2", "--cell", "16"]),
    (dict(dpi=150, cell=16), ["--dpi", "150", "--cell", "16"]),
    (dict(center=0.05, symmetric=True, colormap="RdBu_r", axes=True),
     ["--center", "0.05", "--symmetric", "--colormap", "RdBu_r", "--axes", "on"]),
    (dict(center=0.1, reduce="extreme", axes="off", layers=1, heads=1),
     ["--center", "0.1", "--reduce", "extreme", "--axes", "off", "--layers", "1", "--heads", "1"]),
    (dict(exclude_keys=range(0, 2), scale="gamma:0.5"), ["--exclude-keys", "0..2", "--scale",
                                                         "gamma:0.5"]),
    (dict(sort_by="entropy", top=3, cell=16), ["--sort-by", "entropy", "--top", "3",
                                               "--cell", "16"]),
    # sorting ranks by the statistics sink_keys and window define
    (dict(sort_by="sink_mass", top=2, sink_keys=4, cell=16),
     ["--sort-by", "sink_mass", "--top", "2", "--sink-keys", "4", "--cell", "16"]),
    # every label: the ranked layout of every head, in grid order (a list joined with commas)
    (dict(pattern=("sink", "local", "vertical-slash", "block-sparse", "mixed"), cell=16),
     ["--pattern", "sink,local,vertical-slash,block-sparse,mixed", "--cell", "16"]),
]


def with_tokens(tmp_path, args):
    path = tmp_path / "tokens.txt"
    path.write_text("\n".join(TOKENS) + "\n")
    return [str(path) if a == "TOKENS" else a for a in args]


@pytest.mark.parametrize("ext", ["png", "svg"])
@pytest.mark.parametrize("kwargs,args", PARITY)
def test_options_match_cli_byte_for_byte(cli, tmp_path, kwargs, args, ext):
    a = attention((2, 2, 8, 8), seed=3)
    want = cli_render(cli, tmp_path, a, "cli." + ext, *with_tokens(tmp_path, args))
    out = tmp_path / ("py." + ext)
    fig = attnviz.figure(a, out=out, **kwargs)
    assert out.read_bytes() == want.read_bytes()
    if ext == "svg":
        assert fig._repr_svg_() == want.read_text()
    else:
        np.testing.assert_array_equal(fig.image, read_png_file(want))
        assert fig._repr_svg_() is None


def test_svg_figure_keeps_its_pixels_too(tmp_path):
    fig = attnviz.figure(attention((1, 2, 8, 8)), out=tmp_path / "f.svg", tokens=TOKENS)
    assert fig.svg.lstrip().startswith("<svg") or fig.svg.lstrip().startswith("<?xml")
    assert fig._repr_png_().startswith(PNG_SIGNATURE)
    np.testing.assert_array_equal(read_png(fig._repr_png_()), fig.image)


def test_layout_is_the_clis_layout_json(cli, tmp_path):
    a = attention((2, 3, 16, 24))
    npy, json_path = tmp_path / "a.npy", tmp_path / "layout.json"
    np.save(npy, a)
    code, err = run_cli(cli, "render", npy, "-o", tmp_path / "c.png", "--quiet", "--layers", "2",
                        "--scale", "log", "--layout-json", json_path)
    assert code == 0, err
    fig = attnviz.figure(a, layers=2, scale="log")
    assert fig.layout == json.loads(json_path.read_text())
    assert len(fig.layout["cells"]) == 3
    fig.layout["cells"].clear()  # a new dict on each access
    assert len(fig.layout["cells"]) == 3


def test_tiles_and_stats_json_match_cli(cli, tmp_path):
    a = attention((2, 2, 12, 12), seed=5)
    npy = tmp_path / "a.npy"
    np.save(npy, a)
    code, err = run_cli(cli, "render", npy, "-o", tmp_path / "c.png", "--quiet", "--tiles",
                        tmp_path / "cli_tiles", "--stats-json", tmp_path / "cli.json",
                        "--sink-keys", "2", "--window", "4")
    assert code == 0, err
    attnviz.render(a, tiles=tmp_path / "py_tiles", stats_json=tmp_path / "py.json", sink_keys=2,
                   window=4)
    names = sorted(p.name for p in (tmp_path / "cli_tiles").iterdir())
    assert names == ["l1_h1.png", "l1_h2.png", "l2_h1.png", "l2_h2.png"]
    assert sorted(p.name for p in (tmp_path / "py_tiles").iterdir()) == names
    for n in names:
        assert (tmp_path / "py_tiles" / n).read_bytes() == (tmp_path / "cli_tiles" / n).read_bytes()
    assert (tmp_path / "py.json").read_bytes() == (tmp_path / "cli.json").read_bytes()


def test_qk_options_match_cli(cli, tmp_path):
    q, k = qk_pair((1, 2, 24, 16), (1, 2, 24, 16))
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "k.npy", k)
    tokens = ["t{}".format(i) for i in range(24)]
    (tmp_path / "tokens.txt").write_text("\n".join(tokens) + "\n")
    svg = tmp_path / "cli.svg"
    code, err = run_cli(cli, "render", "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "-o",
                        svg, "--quiet", "--sliding-window", "6", "--softcap", "5", "--scale",
                        "log", "--clip", "0,99", "--title", "qk", "--tokens",
                        tmp_path / "tokens.txt", "--values", "logits")
    assert code == 0, err
    out = tmp_path / "py.svg"
    fig = attnviz.figure_qk(q, k, out=out, sliding_window=6, softcap=5, scale="log",
                            clip=(0, 99), title="qk", tokens=tokens, values="logits")
    assert ">t23<" in fig.svg
    assert out.read_bytes() == svg.read_bytes()
    assert fig.svg == svg.read_text()
    # attention chunks, the flag and the keyword alike (without a causal mask, each query's
    # own chunk on both sides: a block-diagonal attention)
    svg = tmp_path / "chunks.svg"
    code, err = run_cli(cli, "render", "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "-o",
                        svg, "--quiet", "--causal", "on", "--attention-chunk", "8")
    assert code == 0, err
    fig = attnviz.figure_qk(q, k, out=tmp_path / "py-chunks.svg", causal="on", attention_chunk=8)
    assert "attention chunks of 8" in fig.svg
    assert fig.svg == svg.read_text()
    svg = tmp_path / "blocks.svg"
    code, err = run_cli(cli, "render", "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "-o",
                        svg, "--quiet", "--attention-chunk", "8")
    assert code == 0, err
    fig = attnviz.figure_qk(q, k, out=tmp_path / "py-blocks.svg", attention_chunk=8)
    assert "attention chunks of 8" in fig.svg
    assert fig.svg == svg.read_text()
    # bidirectional spans (a prefix, an image's tokens), the flag and the keyword alike; and
    # their errors, the flag's one line and the keyword's ValueError
    svg = tmp_path / "spans.svg"
    code, err = run_cli(cli, "render", "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "-o",
                        svg, "--quiet", "--causal", "on", "--bidirectional-spans", "0:5,10:16")
    assert code == 0, err
    fig = attnviz.figure_qk(q, k, out=tmp_path / "py-spans.svg", causal="on",
                            bidirectional_spans=[(0, 5), (10, 16)])
    assert "bidirectional spans [0, 5), [10, 16)" in fig.svg
    assert fig.svg == svg.read_text()
    code, err = run_cli(cli, "render", "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy", "-o",
                        tmp_path / "bad.svg", "--quiet", "--causal", "on",
                        "--bidirectional-spans", "0:5,3:16")
    lines = [l for l in err.splitlines() if l and not l.startswith("For more information")]
    assert code == 2 and "disjoint" in err and len(lines) == 1, err
    for spans, want in [([(0, 5), (3, 16)], "disjoint"), ([(0, 30)], "past the 24 keys"),
                        ([5], "not a pair"), ("0:5", "expected pairs"), ([], "no spans")]:
        with pytest.raises(ValueError, match=want):
            attnviz.figure_qk(q, k, causal="on", bidirectional_spans=spans)
    with pytest.raises(ValueError, match="not causal"):
        attnviz.figure_qk(q, k, bidirectional_spans=[(0, 5)])


@pytest.mark.parametrize(
    "kwargs,keyword",
    [
        (dict(layers="9"), "layers=9"),
        (dict(heads=5), "heads=5"),
        (dict(cell=0), "cell"),
        (dict(scale="cubic"), "scale=cubic"),
        (dict(clip=(50, 10)), "clip=50.0,10.0"),
        (dict(vmin=1, vmax=0), "vmin=1 must be below vmax=0"),
        (dict(log_floor=-1.0, scale="log"), "log_floor=-1"),
        (dict(log_floor=1e-3), "log_floor applies to scale log only"),
        (dict(vmin=0, vmax=0.5, clip=(1, 99)), "clip limits the range from the data, which vmin"),
        (dict(tokens=TOKENS, axes="off"), "tokens labels the axes, which axes off leaves out"),
        (dict(exclude_keys=8), "exclude_keys=0..8"),
        (dict(scale_factor=0), "scale_factor=0"),
        (dict(tokens=["a", "b"]), "tokens:"),
        (dict(axes="maybe"), "axes"),
    ],
)
def test_errors_name_the_keyword(kwargs, keyword):
    """A Python caller passed `layers=`, not `--layers`: the message says so."""
    with pytest.raises(ValueError) as e:
        attnviz.figure(attention((2, 2, 8, 8)), **kwargs)
    message = str(e.value)
    assert keyword in message, message
    assert "--" not in message, message


def test_bad_python_values():
    a = attention((1, 1, 8, 8))
    for kwargs, fragment in [
        (dict(clip=(1, 2, 3)), "clip: expected (LOW, HIGH)"),
        (dict(exclude_keys=-1), "exclude_keys: -1 is negative"),
        (dict(tokens="abc"), "tokens: expected a list of strings"),
        (dict(vmin="0"), "vmin: expected a number"),
        (dict(scale_factor=2, dpi=300), "scale_factor and dpi"),
        (dict(theme="sepia"), "invalid value 'sepia' for theme"),
        (dict(stats_json="x.json", window=0), "window: 0 must be a positive integer"),
        (dict(sink_keys=4), "sink_keys sets what the head statistics count"),
        (dict(window=8, top=None), "window sets what the head statistics count"),
        # (wrong kinds of value: each a ValueError naming its keyword, not the TypeError of a
        # failed conversion in the extension, "failed to extract field PyOptions.causal")
        (dict(causal=None), 'causal: expected True, False or "auto", not None'),
        (dict(causal=1), 'causal: expected True, False or "auto", not 1'),
        (dict(cell=2 ** 64), "cell: 18446744073709551616 is out of range"),
        (dict(tokens=0.5), "tokens: expected a list of strings (one per key), not 0.5"),
        (dict(stats_json=3), "stats_json: expected a path, not 3"),
        # (a bool is not an index: layers=True drew layer 1)
        (dict(layers=True), "layers: expected a selection such as"),
        (dict(heads=[1, False]), "heads: expected an integer, not False"),
    ]:
        with pytest.raises(ValueError, match=None) as e:
            attnviz.render(a, **kwargs)
        assert fragment in str(e.value), (kwargs, str(e.value))
    with pytest.raises(ValueError, match="figure: expected a path, not 3"):
        attnviz.heads(a, figure=3)
    # scale_factor=None is the default, as dpi=None is
    assert np.array_equal(attnviz.render(a, scale_factor=None), attnviz.render(a))


def test_small_heads_are_magnified_by_default():
    """59 tokens (MiniLM on a sentence): 4 px an entry, not 59-px cells; crisp squares; an
    explicit cell wins."""
    a = attention((1, 1, 59, 59), seed=1)
    fig = attnviz.figure(a, colorbar=False)
    cell = fig.layout["cells"][0]
    assert (cell["width"], cell["height"]) == (236, 236)
    assert (cell["pooled_width"], cell["pooled_height"]) == (59, 59)
    x, y = cell["x"], cell["y"]
    block = fig.image[y:y + 236, x:x + 236, :3].astype(int)
    # every entry is a 4x4 square of one colour
    squares = block.reshape(59, 4, 59, 4, 3)
    assert (squares == squares[:, :1, :, :1, :]).all()
    explicit = attnviz.figure(a, colorbar=False, cell=59).layout["cells"][0]
    assert (explicit["width"], explicit["height"]) == (59, 59)
    # 256 and longer keep the 256-px cell
    assert attnviz.figure(attention((1, 1, 300, 300))).layout["cells"][0]["width"] == 256


def test_small_heads_magnified_as_the_cli_does(cli, tmp_path):
    a = attention((1, 2, 59, 59), seed=2)
    want = cli_render(cli, tmp_path, a, "cli.png")
    np.testing.assert_array_equal(attnviz.render(a), read_png_file(want))


def test_files_are_read_from_their_paths(cli, tmp_path):
    """A path where attention goes is the file the CLI reads, streamed from it in place: each
    function draws and measures what its command does with the file (render, heads, diff;
    ``tensor=`` picks one of several tensors, a capture's file is recomputed)."""
    from safetensors.numpy import save_file

    minilm = ROOT / "tests" / "data" / "minilm_attn_128.npy"
    a = np.load(minilm)

    def same_as_cli(command, args, png, function, *inputs, **kwargs):
        out = tmp_path / "cli.png"
        code, err = run_cli(cli, command, *inputs, *args, "-o", out, "--quiet")
        assert code == 0, err
        function(*inputs, out=png, **kwargs)
        assert png.read_bytes() == out.read_bytes(), (command, inputs, kwargs)

    # .npy, and the same values with query rows, as stored
    same_as_cli("render", ["--layers", "2"], tmp_path / "a.png", attnviz.render, minilm,
                layers=2)
    np.testing.assert_array_equal(attnviz.render(str(minilm), layers=2),
                                  attnviz.render(a, layers=2))
    np.testing.assert_array_equal(attnviz.render(minilm, queries=(64, 128), heads=1),
                                  attnviz.render(a, queries=(64, 128), heads=1))
    # bf16 in a .safetensors file, which numpy cannot read
    bf16 = tmp_path / "bf16.safetensors"
    code, err = run_cli(cli, "synth", "--seq", "256", "--heads", "2", "--dtype", "bf16", "-o",
                        bf16)
    assert code == 0, err
    same_as_cli("render", [], tmp_path / "b.png", attnviz.render, bf16)
    # one tensor of several, by tensor=; without it the message names the keyword
    two = tmp_path / "two.safetensors"
    save_file({"first": a[:2], "second": a[2:4].astype(np.float16)}, str(two))
    same_as_cli("render", ["--tensor", "second"], tmp_path / "c.png", attnviz.figure, two,
                tensor="second")
    with pytest.raises(ValueError, match="tensor="):
        attnviz.render(two)
    with pytest.raises(ValueError, match="tensor"):
        attnviz.render(a, tensor="second")
    # statistics of a file, and of a capture's file (recomputed), as attnviz heads lists them
    qk = tmp_path / "qk.safetensors"
    code, err = run_cli(cli, "synth-qk", "--seq", "128", "--heads", "2", "--dim", "16", "-o", qk)
    assert code == 0, err
    for path in (minilm, qk):
        out = tmp_path / "heads.json"
        code, err = run_cli(cli, "heads", path, "--json", out)
        assert code == 0, err
        assert attnviz.heads(path) == json.loads(out.read_text())["heads"], path
    # a capture's file drawn as its attention, by render and by render_qk (q alone)
    same_as_cli("render", [], tmp_path / "d.png", attnviz.render, qk)
    np.testing.assert_array_equal(attnviz.render_qk(qk), attnviz.render(qk))
    # the difference of two files
    other = tmp_path / "other.npy"
    np.save(other, a[:, ::-1].copy())
    same_as_cli("diff", [], tmp_path / "e.png", attnviz.diff, minilm, other)
