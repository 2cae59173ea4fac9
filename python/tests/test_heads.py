"""attnviz.heads: the same statistics, from the same pass, as `attnviz heads --json`, for arrays
and for Q and K; errors name keywords."""

import json
from pathlib import Path

import numpy as np
import pytest

import attnviz
from conftest import read_png, run_cli

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"


def _cli_heads(cli, tmp_path, *args):
    out = tmp_path / "heads.json"
    code, err = run_cli(cli, "heads", *args, "--json", out)
    assert code == 0, err
    return json.loads(out.read_text())["heads"]


def test_heads_of_an_array_equal_the_cli(cli, tmp_path):
    path = DATA / "minilm_attn_128.npy"
    records = attnviz.heads(np.load(path), layers="1,6", sink_keys=2, window=8)
    assert records == _cli_heads(cli, tmp_path, path, "--layers", "1,6", "--sink-keys", "2",
                                 "--window", "8")
    assert [(r["layer"], r["head"]) for r in records[:2]] == [(1, 1), (1, 2)]
    assert len(records) == 24
    # Per-layer lists, as HuggingFace returns outputs.attentions, give the same records.
    per_layer = [a[None] for a in np.load(path)]
    assert attnviz.heads(per_layer, layers="1,6", sink_keys=2, window=8) == records
    top = sorted(records, key=lambda h: -h["sink_mass"])[0]
    assert top["pattern"] in ("sink", "local", "vertical-slash", "block-sparse", "mixed")


def test_heads_from_q_and_k_equal_the_cli(cli, tmp_path):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 4, 96, 16)).astype(np.float32)
    k = rng.standard_normal((2, 2, 96, 16)).astype(np.float32)
    np.save(tmp_path / "q.npy", q)
    np.save(tmp_path / "k.npy", k)
    records = attnviz.heads(q, k, causal="on", sliding_window=20)
    expected = _cli_heads(cli, tmp_path, "--q", tmp_path / "q.npy", "--k", tmp_path / "k.npy",
                          "--causal", "on", "--sliding-window", "20")
    assert records == expected
    assert len(records) == 8


def test_heads_errors_name_keywords():
    attn = np.load(DATA / "minilm_attn_128.npy")
    with pytest.raises(ValueError, match="layers=9"):
        attnviz.heads(attn, layers="9")
    with pytest.raises(ValueError, match="window"):
        attnviz.heads(attn, window=0)
    # Q/K options beside stored attention are refused, as the CLI refuses them
    for kw in ("softcap", "sliding_window", "softmax_scale"):
        with pytest.raises(ValueError, match=f"{kw} applies only to attention recomputed"):
            attnviz.heads(attn, **{kw: 4})
    with pytest.raises(ValueError, match="not a non-empty range inside the 128 query rows"):
        attnviz.heads(attn, queries=(120, 130))


def test_heads_of_a_slice_of_rows_equal_the_cli(cli, tmp_path):
    path = DATA / "minilm_attn_128.npy"
    records = attnviz.heads(np.load(path), layers="2", queries=slice(100, None))
    assert records == _cli_heads(cli, tmp_path, path, "--layers", "2", "--queries", "100..")
    # rows keep their numbers: argmax names rows 100..127
    assert all(100 <= r["argmax"][0] < 128 for r in records)


def test_heads_figure_equals_the_cli(cli, tmp_path):
    """``figure=`` writes the summary ``attnviz heads --figure`` draws, byte for byte."""
    path = DATA / "minilm_attn_128.npy"
    records = attnviz.heads(np.load(path), heads="1-6", figure=tmp_path / "py.png")
    assert len(records) == 36
    code, err = run_cli(cli, "heads", path, "--heads", "1-6", "--figure", tmp_path / "cli.png")
    assert code == 0, err
    assert (tmp_path / "py.png").read_bytes() == (tmp_path / "cli.png").read_bytes()
    attnviz.heads(np.load(path), layers=1, figure=tmp_path / "s.svg")
    assert "<title>entropy (nats)</title>" in (tmp_path / "s.svg").read_text()
    # title= is --title: a line above the summary, which it needs.
    untitled = (tmp_path / "py.png").read_bytes()
    attnviz.heads(np.load(path), heads="1-6", figure=tmp_path / "py.png", title="MiniLM")
    code, err = run_cli(cli, "heads", path, "--heads", "1-6", "--figure", tmp_path / "cli.png",
                        "--title", "MiniLM")
    assert code == 0, err
    titled = (tmp_path / "py.png").read_bytes()
    assert titled == (tmp_path / "cli.png").read_bytes()
    assert read_png(titled).shape[0] > read_png(untitled).shape[0], "no line above"
    with pytest.raises(ValueError, match="figure"):
        attnviz.heads(np.load(path), title="MiniLM")


def test_sorted_and_topped_heads_equal_the_cli(cli, tmp_path):
    """``sort_by=``/``top=`` list what ``attnviz heads --sort-by --top`` lists, in its order,
    and leave the summary figure whole."""
    path = DATA / "minilm_attn_128.npy"
    attn = np.load(path)
    records = attnviz.heads(attn, sort_by="sink_mass", top=5, figure=tmp_path / "py.png")
    out = tmp_path / "cli.json"
    code, err = run_cli(cli, "heads", path, "--sort-by", "sink_mass", "--top", "5",
                        "--json", out, "--figure", tmp_path / "cli.png")
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert records == doc["heads"]
    assert (doc["options"]["heads_listed"], doc["options"]["heads_computed"]) == (5, 72)
    every = attnviz.heads(attn)
    assert records == sorted(every, key=lambda h: -h["sink_mass"])[:5]
    assert (tmp_path / "py.png").read_bytes() == (tmp_path / "cli.png").read_bytes()
    with pytest.raises(ValueError, match="sort_by"):
        attnviz.heads(attn, top=3)
    with pytest.raises(ValueError, match="invalid value 'sinks' for sort_by"):
        attnviz.heads(attn, sort_by="sinks")


def test_heads_of_some_labels_equal_the_cli(cli, tmp_path):
    """``pattern=`` lists what ``attnviz heads --pattern`` lists, and ``render``/``figure``
    draw only those heads; a word that is no label, and a label no head has, raise
    ``ValueError`` naming the keyword (``heads`` lists nothing instead)."""
    path = DATA / "minilm_attn_128.npy"
    attn = np.load(path)
    every = attnviz.heads(attn)
    records = attnviz.heads(attn, pattern=["local", "sink"])
    out = tmp_path / "cli.json"
    code, err = run_cli(cli, "heads", path, "--pattern", "local,sink", "--json", out)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert records == doc["heads"]
    assert records == [h for h in every if h["pattern"] in ("local", "sink")]
    assert 0 < len(records) < len(every)
    assert attnviz.heads(attn, pattern="local") == [h for h in every if h["pattern"] == "local"]
    fig = attnviz.figure(attn, pattern="local", cell=32)
    drawn = sorted((c["layer"], c["head"]) for c in fig.layout["cells"] if c["width"] > 0)
    assert drawn == sorted((h["layer"], h["head"]) for h in every if h["pattern"] == "local")
    with pytest.raises(ValueError, match=r'pattern="retrieval": "retrieval" is not a pattern'):
        attnviz.heads(attn, pattern="retrieval")
    with pytest.raises(ValueError, match="pattern: expected a label or a list"):
        attnviz.heads(attn, pattern=3)
    with pytest.raises(ValueError, match="^pattern keeps the heads .* which a difference"):
        attnviz.diff(attn, attn, pattern="local")
    if all(h["pattern"] != "block-sparse" for h in every):
        assert attnviz.heads(attn, pattern="block-sparse") == []
        with pytest.raises(ValueError, match="no head has that label"):
            attnviz.figure(attn, pattern="block-sparse")


def test_heads_as_a_structured_array_hold_the_records():
    attn = np.load(DATA / "minilm_attn_128.npy")[:2, :3]
    # a head with one NaN entry, and one with no finite entry at all
    attn[1, 1, 5, 7] = np.nan
    attn[1, 2] = np.nan
    records = attnviz.heads(attn)
    h = attnviz.heads(attn, as_array=True)
    assert h.shape == (6,)
    assert list(h.dtype.names[:4]) == ["layer", "head", "sink_mass", "local_mass"]
    for row, r in zip(h, records):
        assert (row["layer"], row["head"], row["pattern"]) == (r["layer"], r["head"], r["pattern"])
        for name in ("sink_mass", "local_mass", "entropy", "mean_distance", "row_sum_mean"):
            assert row[name] == r[name]
        assert row["non_finite"] == r["non_finite"]
        assert row["recall_vertical_slash"] == r["recalls"]["vertical_slash"]
        n = len(r["top_keys"])
        assert row["top_keys"][:n].tolist() == [k for k, _ in r["top_keys"]]
        assert row["top_keys_mass"][:n].tolist() == [m for _, m in r["top_keys"]]
        assert np.isnan(row["top_keys_mass"][n:]).all()
        assert row["top_offsets"][: len(r["top_offsets"])].tolist() == [
            d for d, _ in r["top_offsets"]]
    assert h["non_finite"][4] == 1 and h["argmax"][4].tolist() == records[4]["argmax"]
    assert records[5]["max"] is None and np.isnan(h["max"][5])
    assert h["argmax"][5].tolist() == [-1, -1]
    assert len(records[5]["top_keys"]) == 0 and np.isnan(h["top_keys_mass"][5]).all()
    # numpy does the rest: the heads with the most sink mass, highest first
    ranked = np.sort(h, order="sink_mass")[::-1]
    assert [(r["layer"], r["head"]) for r in ranked[:2]] == [
        (r["layer"], r["head"]) for r in attnviz.heads(attn, sort_by="sink_mass", top=2)]


def test_a_slice_of_rows_renders_as_the_cli_draws_it(cli, tmp_path):
    path = DATA / "minilm_attn_128.npy"
    fig = attnviz.figure(np.load(path), layers="1", heads="1", queries=(100, 128), axes=True)
    out = tmp_path / "cli.png"
    code, err = run_cli(cli, "render", path, "--layers", "1", "--heads", "1", "--queries",
                        "100..128", "--axes", "on", "-o", out, "--quiet")
    assert code == 0, err
    from PIL import Image
    assert np.array_equal(fig.image, np.asarray(Image.open(out).convert("RGBA")))
    rows = [t["position"] for t in fig.layout["axis_ticks"] if t["axis"] == "query"]
    assert rows and all(100 <= r < 128 for r in rows), rows
