"""attnviz.heads: the same statistics, from the same pass, as `attnviz heads --json`, for arrays
and for Q and K; errors name keywords."""

import json
from pathlib import Path

import numpy as np
import pytest

import attnviz
from conftest import run_cli

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
