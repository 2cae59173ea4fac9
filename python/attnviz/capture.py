"""Queries and keys captured from a HuggingFace model as its attention receives them.

    with attnviz.capture(model) as cap:
        model(**inputs)
    cap.save("capture.safetensors", tokens=tokenizer.convert_ids_to_tokens(inputs.input_ids[0]))
    attnviz.figure_qk(cap)                      # or: attnviz render capture.safetensors
    cap = attnviz.Capture.load("capture.safetensors")   # later, elsewhere: the same capture

The capture registers an attention function through transformers' ``AttentionInterface``. It
records each layer's ``query`` and ``key`` exactly as the model's attention gets them (after
RoPE and QK-norm; K with its own, grouped, head count), with the layer's ``scaling``, sliding
window, logit softcap, causality and sink logits, then calls the implementation the model was
using (sdpa, flash, eager, ...) with the same arguments, so the model's outputs are unchanged.
Nothing N² is formed: Q and K are O(N·d) per head, copied to ``device`` (host memory by default)
layer by layer as they come, in their own dtype.

The mask the model passes its attention says which positions of the batch item are padding
(keys no query sees): they are left out of Q and K (``Capture.positions`` lists the others). The
rest of that mask must be causal or bidirectional with the layer's sliding window and add
nothing to the scores, which is what attnviz recomputes. A causal layer's mask may also show
the queries of a span of positions every key of their span (Gemma-3's bidirectional image
tokens, PaliGemma's prefix-LM: transformers' ``block_sequence_ids`` or ``or_mask_function``):
the layer's ``bidirectional_spans`` list them, ``[[s, e], ...]`` in the capture's positions,
and attnviz recomputes them with it. Anything else (packed sequences, a custom 4D mask, an
ALiBi bias, spans in a layer of attention chunks) makes reading the capture raise
``ValueError``. Only the
attention modules of the model (or part of it) given are recorded, one per layer index: an
encoder-decoder is captured a kind at a time (``attnviz.capture(model.get_encoder())``, or
``modules="decoder.*.encoder_attn"`` for its cross-attention).
"""

import atexit
import fnmatch
import itertools
import json
import math
import os
import re
import struct
import sys
import warnings

import numpy as np

__all__ = ["capture", "Capture"]

_NAME = "attnviz_capture"
_NAMES = itertools.count()
_FORMAT = 1


def capture(model, layers=None, batch=0, device="cpu", modules=None, spill=None, part=None):
    """Captures Q and K of ``model``'s attention layers while the ``with`` block runs.

    model: a transformers ``PreTrainedModel`` whose attention dispatches through
        ``AttentionInterface`` (Llama, Qwen, Mistral, Gemma, gpt-oss, BERT, ... in recent
        transformers); any other raises ``ValueError`` naming its class.
    layers: the model's layer indices to keep (0-based; default all).
    batch: the batch item to keep, without its padding (the positions the model's attention
        mask hides from every query). A vision tower given several images at once (LLaVA's,
        Idefics3's) runs them as a batch: ``batch=1`` keeps the second image's attention
        there (one that runs them one after another takes ``part=``).
    device: where the captured tensors go ("cpu" by default; ``None`` keeps them where they
        are, e.g. on the GPU).
    modules: which attention modules to record, a glob over their names in
        ``model.named_modules()`` (default all): one kind per layer, where a model runs more
        (an encoder-decoder: ``"encoder.*"``, ``"decoder.*.self_attn"``, or Whisper's
        cross-attention ``"decoder.*.encoder_attn"``).
    spill: a folder (on a disk, not a RAM-backed tmpfs) where each layer's Q and K go as
        soon as the layer has run, in files memory-mapped back (unlinked at once, so nothing
        is left there, even by a crash): the capture then needs disk, not host memory, beyond
        one layer, and the operating system writes its pages out and drops them as memory
        runs short (a 128k-token capture of a 32-layer model with 32 query and 8 key heads
        of 128 dimensions holds 43 GiB of bfloat16). Without it (the default) the capture is
        held in memory on ``device``. The rows a ``generate`` appends are held in memory until
        the capture is read, then joined into files there too.
    part: which part to keep of a layer whose attention runs in parts, one call for each
        (0-based): a vision tower's blocks attend within each image, video frame or window on
        its own (Qwen2-VL's, Qwen2.5-VL's, GLM-4V's), so ``part=1`` captures the second
        image's attention at every block. By default (None) parts of one size are joined into
        one bidirectional layer in attention chunks of that size (its block-diagonal
        attention), and parts of other sizes raise ``ValueError``. Layers that run in one part
        are kept whole with ``part=0``.
    """
    return Capture(model, layers=layers, batch=batch, device=device, modules=modules,
                   spill=spill, part=part)


class Capture:
    """Per-layer Q (H, N, d) and K (H_kv, N, d) of one forward pass, and the layers' settings.

    ``q`` and ``k`` are lists in layer order, ``layers`` a list of dicts (``index``,
    ``scaling``, ``causal``, ``sliding_window``, ``attention_chunk_size``, ``softcap``,
    ``sinks``, and ``bidirectional_spans`` in a causal layer whose mask has them: sorted,
    disjoint ``[s, e]`` of the capture's positions, the query at each ``a`` in ``[s, e)``
    seeing the keys to ``e`` too), ``model`` the class name. A second forward pass in the same ``with`` block
    replaces the first, unless it continues it over the model's KV cache (``model.generate``
    decoding a token a pass): then its query rows are appended and its new keys with them, so a
    capture around ``generate`` holds the attention over the prompt and every token fed back,
    as one pass over them would (cross-attention: every decoder step's rows over the same
    encoder keys).
    """

    def __init__(self, model, layers=None, batch=0, device="cpu", modules=None, spill=None,
                 part=None):
        self.tokens = None
        if part is not None and (not _is_int(part) or part < 0):
            raise ValueError("attnviz.capture: part={!r} is not a part of a layer run in parts "
                             "(0, 1, ...; None: no layer may run in parts)".format(part))
        self._part = None if part is None else int(part)
        if spill is not None:
            try:
                spill = os.fspath(spill)
            except TypeError:
                raise ValueError("attnviz.capture: spill={!r} is not a folder's path".format(
                    spill)) from None
            if not os.path.isdir(spill):
                raise ValueError("attnviz.capture: spill={!r} is not a folder".format(spill))
            if device != "cpu":
                raise ValueError("attnviz.capture: spill= keeps the capture in files on the "
                                 "host, so device={!r} cannot hold it too".format(device))
        self._spill = spill
        if modules is not None and not isinstance(modules, str):
            raise ValueError("attnviz.capture: modules={!r} is not a glob over module names "
                             "(a string such as 'decoder.*.self_attn')".format(modules))
        self._glob = modules
        if layers is not None:
            given = [layers] if _is_int(layers) else layers
            try:
                layers = sorted({int(i) for i in given if _is_int(i)})
                whole = len(layers) == len(set(given))
            except TypeError:
                whole = False
            if not whole:
                raise ValueError("attnviz.capture: layers={!r} is not a layer index or a list of "
                                 "them (0-based)".format(given))
        model = _held_model(model)
        self._model = model
        self._wanted = layers
        if not _is_int(batch) or batch < 0:
            raise ValueError("attnviz.capture: batch={!r} is not an item of a batch (0, 1, ...)"
                             .format(batch))
        self._batch = int(batch)
        if device is not None:
            import torch

            try:
                torch.device(device)
            except (TypeError, RuntimeError, ValueError):
                raise ValueError("attnviz.capture: device={!r} is not a torch device (\"cpu\", "
                                 "\"cuda:0\", ...; None keeps them where they are)".format(
                                     device)) from None
        self._device = device
        # Why a generation could not be joined, kept across its later passes (each would only
        # say that it follows the one before), until a pass of its own starts over.
        self._broken = None
        self._start_pass()
        # Modules without a layer index, numbered in the order they first run (a module that
        # runs several times in one forward pass, shared between layers as ALBERT's is, once per
        # run), so that a second forward pass finds the same numbers and replaces the first.
        self._order = {}
        # (modules' runs and attention calls are counted by hooks of their own while the with
        # block lasts, _module_call: set up on entry)
        self._module_hooks = {}
        self._saved = None
        self.model = type(model).__name__

    # -- the context manager ------------------------------------------------------------------

    def __enter__(self):
        from transformers import AttentionInterface

        config = getattr(self._model, "config", None)
        original = getattr(config, "_attn_implementation", None)
        if config is None or original is None or not _dispatches(self._model):
            raise ValueError(
                "attnviz.capture: {} does not dispatch its attention through transformers' "
                "AttentionInterface, so its queries and keys cannot be captured".format(self.model))
        self._inner = _implementation(original)
        # (a capture inside another of the same model wraps that one's function: the kind of
        # attention underneath is the one that capture wrapped)
        wrapped = getattr(getattr(self._inner, "__wrapped__", self._inner), "__self__", None)
        self._original = wrapped._original if isinstance(wrapped, Capture) else original
        # A name of its own: one shared name let a second capture (of another model, or the
        # same) take the first one's calls, and kept the last capture, Q and K and all,
        # referenced by transformers' registry after its block (unregistered on exit now).
        self._name = "{}_{}".format(_NAME, next(_NAMES))
        AttentionInterface.register(self._name, _eager_python(self._attention))
        _register_mask(original, self._name)
        self._saved = _set_implementation(self._model, self._name)
        self._start_pass()
        # Whether the implementation underneath leaves sink logits out, asked once a block (a
        # signature read, not one per attention call), and whether that was said yet
        # (_sinks_left_out)
        self._sinks_dropped = _drops_sinks(self._original)
        self._sinks_warned = False
        # Only the attention of the module given is recorded: its config may be shared with
        # more (an encoder-decoder's encoder, captured alone, shares the decoder's config).
        self._by_name = dict(self._model.named_modules())
        self._names = {id(m): name for name, m in self._by_name.items()}
        self._passed_over = set()
        self._unwanted = set()
        self._ran = 0
        self._module_hooks, self._owner_of, self._in_pass = {}, {}, False
        self._last_runs, self._outside = {}, {}
        self._count_runs_afresh()
        self._hook = None
        if hasattr(self._model, "register_forward_pre_hook"):
            self._hook = (self._model.register_forward_pre_hook(self._forward, with_kwargs=True),
                          self._model.register_forward_hook(self._forward_done))
        return self

    def __exit__(self, *exc):
        _restore_implementation(self._model, self._saved)
        self._saved = None
        _unregister(self._name)
        self._masks = {}  # (the model's masks, N² each, are not kept past the block)
        if self._hook is not None:
            for hook in self._hook:
                hook.remove()
            self._hook = None
        for hook in self._module_hooks.values():
            if hook is not None:
                hook.remove()
        self._module_hooks = {}
        self._by_name = {}
        self._cut_to_cache()
        self._cache = None
        for cache in self._watched:
            try:
                del cache.reorder_cache  # (the class's own again)
            except AttributeError:
                pass
        self._watched = []
        return False

    def _forward(self, module, args, kwargs):
        self._ran += 1
        self._in_pass = True
        self._count_runs_afresh()
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        self._pass_start = _cache_length(cache)
        if cache is not self._cache:
            self._reordered = None  # (another cache: another generation)
        # (held until the with block ends: generate drops its cache when it returns, and
        # the cache's length then is where the capture ends, _cut_to_cache)
        self._cache = cache
        self._watch_reorders(cache)

    def _watch_reorders(self, cache):
        """Watches ``cache`` for beam search's reordering (``reorder_cache(beam_idx)``, which
        ``generate`` calls between passes): where batch item ``batch`` takes another beam's
        history, the rows held are no longer its sequence's. A causal layer sees it in its
        keys, but a cross-attention's keys are the encoder's, the same for every beam, and its
        rows came from whichever beams held the item's place in turn (a BART's, 0.002 off)."""
        original = getattr(cache, "reorder_cache", None)
        if not callable(original) or getattr(original, "_attnviz", None) is self:
            return

        def reorder(beam_idx, *args, **kwargs):
            b = self._batch
            if self._reordered is None and b < len(beam_idx) and int(beam_idx[b]) != b:
                self._reordered = int(beam_idx[b])
            return original(beam_idx, *args, **kwargs)

        reorder._attnviz = self
        try:
            cache.reorder_cache = reorder
        except (AttributeError, TypeError):
            return
        self._watched.append(cache)

    def _forward_done(self, *_):
        # (a forward call the hooks do not see, ``forward`` called directly, starts nowhere
        # known: not where the last pass seen did)
        self._pass_start = None
        # (runs after it, gradient checkpointing's in backward, are mapped onto its runs)
        self._in_pass = False
        self._last_runs, self._outside = self._pass_runs, {}
        self._count_runs_afresh()

    def _count_runs_afresh(self):
        """Forgets the runs and calls counted (_module_call): at a forward pass's start, and at
        its end, where the runs after it are counted on their own."""
        self._runs, self._calls, self._owner_runs, self._pass_runs = {}, {}, {}, {}

    def _layer_index(self, module, name, run):
        """The layer a call of ``module`` (named ``name`` in the model) records: its
        ``layer_idx``, else its place among the modules of its stack (the modules whose names
        differ in their numbers alone: ``encoder.layers.*.attention``) in the order they first
        ran, counting each ``run`` of a module within one run of the module that holds the
        stack (ALBERT runs one module at every layer; Zamba2's shared blocks carry
        ``layer_idx`` -1). Every module of the stack is counted, captured or not, so that
        ``modules='*layers.2.*'`` records layer 2, not 0, and a vision tower's blocks and a
        language model's layers count from 0 each."""
        index = getattr(module, "layer_idx", None)
        if isinstance(index, int) and index >= 0:
            # (a second run of it, as gradient checkpointing's recomputation in backward makes,
            # is a new pass over that layer, as before)
            return index
        order = self._order.setdefault(_stack(name), {})
        return order.setdefault((id(module), run), len(order))

    def _module_call(self, module, name):
        """``(run, part)`` of this attention call of ``module``: which run of the module it is
        within the current run of the module that holds its stack (0 but where one module
        serves several layers, as ALBERT's does: :meth:`_layer_index`), and which call of that
        run's layer it is within the model's forward pass, from 1. A vision tower's attention
        runs once for each image, video frame or window (Qwen2-VL's, Qwen2.5-VL's and some
        thirty others' do, under every implementation but flash attention), and the tower runs
        again for a video after the images: those calls are parts of one layer, not layers.
        Before, each was counted as a run of a shared module, a layer of its own; and so was
        gradient checkpointing's recomputation of a module without a layer index in backward
        (a ViT's 3 layers captured as 6). Runs outside the model's forward pass, which that
        recomputation is, are mapped onto the last pass's in reverse, the order backward runs
        them; where the model's forward hook never fires (``forward`` called directly), each
        run of a module is a pass of its own. Each module, and the module holding its stack,
        is watched by a forward pre-hook from the module's first call on (that call marks the
        run it is in) until the with block ends."""
        key = id(module)
        if key not in self._module_hooks:
            owner = self._by_name.get(_stack_owner(name))
            self._owner_of[key] = None if owner is None else id(owner)
            if owner is not None and id(owner) not in self._module_hooks:
                self._module_hooks[id(owner)] = _pre_hook(owner, self._owner_ran)
                self._owner_ran(owner)  # (it is running: its module is)
            self._module_hooks[key] = _pre_hook(module, self._module_ran)
            self._module_ran(module)
        elif key not in self._runs:
            self._module_ran(module)  # (its forward called directly, past its hook)
        run = self._runs[key][1] - 1
        part = self._calls[(key, run)] = self._calls.get((key, run), 0) + 1
        return run, part

    def _owner_ran(self, owner, *_):
        if self._in_pass:
            self._owner_runs[id(owner)] = self._owner_runs.get(id(owner), 0) + 1

    def _module_ran(self, module, *_):
        key = id(module)
        if not self._in_pass:
            done = self._outside[key] = self._outside.get(key, 0) + 1
            runs = self._last_runs.get(key, 1)
            run = runs - 1 - (done - 1) % runs
            self._runs[key] = (None, run + 1)
            self._calls[(key, run)] = 0
            return
        seen = self._owner_runs.get(self._owner_of.get(key), 0)
        last = self._runs.get(key)
        count = last[1] + 1 if last is not None and last[0] == seen else 1
        self._runs[key] = (seen, count)
        self._pass_runs[key] = max(count, self._pass_runs.get(key, 0))

    def _start_pass(self):
        """Forgets what an earlier forward pass recorded: a capture holds one pass."""
        self._records = {}
        self._owners = {}
        self._problems = {}
        # Per layer, its module's name and the parts its latest run made (a vision tower's
        # images: _module_call), for part=; and the sizes of the parts joined (_join_part).
        self._parts = {}
        self._part_sizes = {}
        self._kept = None
        self._masks = {}
        # Per layer, the query rows and keys that passes continuing this one appended, in
        # order (`_Appended`): joined once, when the capture is read (`_joined`), so a
        # generation of n tokens copies each row a bounded number of times rather than the
        # whole keys n times.
        self._tails = {}
        self._appended = {}
        self._continuing = False
        # Passes that continued this one, counted at their first layer; and the padded
        # positions held before the latest of them (_padding_continues).
        self._passes = 0
        self._kept_before = (None, None)
        self._continued = set()  # (the layers those passes appended to)
        # The position the model's KV cache says the current forward pass starts at (its
        # length before the pass), None where the model's forward hook did not see a cache.
        self._pass_start = getattr(self, "_pass_start", None)
        self._cache = getattr(self, "_cache", None)
        # The beam whose history beam search gave the batch item captured, since its cache
        # was first seen (None: none); the caches watched for it.
        self._reordered = getattr(self, "_reordered", None)
        self._watched = getattr(self, "_watched", [])

    def _keys_held(self, index):
        """How many keys layer ``index`` holds, its appended passes' included (counted as they
        are appended: summing the parts on every call made a generation quadratic)."""
        return self._records[index][1].shape[1] + self._appended.get(index, 0)

    def _cache_held(self, index):
        """How many keys the model's KV cache holds for layer ``index`` as far as the capture
        knows: the keys it holds and a padded item's padding (in the cache, left out of the
        capture); 0 before the layer's first pass."""
        if index not in self._records:
            return 0
        return self._keys_held(index) + self._padded()

    def _rows_held(self, index):
        """How many query rows layer ``index`` holds, its appended passes' included."""
        tail = self._tails.get(index)
        return self._records[index][0].shape[1] + (len(tail[0]) if tail else 0)

    def _held_key(self, index, position):
        """The key layer ``index`` holds at ``position``, (heads, d)."""
        k = self._records[index][1]
        if position < k.shape[1]:
            return k[:, position]
        return self._tails[index][1].row(position - k.shape[1])

    def _placement(self, index, query, key):
        """Where a pass over the KV cache goes in layer ``index``: ``(how, rows, keys)``, its
        rows and new keys appended (``how``: :meth:`_continues_keys`'s) after the layer's first
        ``rows`` rows and ``keys`` keys, else None. Speculative decoding (``generate`` with
        ``assistant_model=`` or ``prompt_lookup_num_tokens=``) checks several candidate
        tokens a pass and cuts the cache back past those it rejects: the next pass starts
        before the rows held, at the cache's length (seen by the model's forward hook,
        ``_pass_start``), and the rows and keys after it go, so no rejected token's row stays
        in the capture. A cut is taken where the pass's keys show it: in a causal layer
        (self-attention) the key before its new ones is the one held at that position; in
        one that is not (an encoder-decoder's cross-attention, whose rows alone are cut) its
        keys are the ones held. (The layer's kind decides which, not the keys: a layer's
        first keys depend on a token and its position alone, so a new token equal to the
        rejected one at a position gives the same key there.)"""
        rows, keys = self._rows_held(index), self._keys_held(index)
        start, causal = self._pass_start, self._records[index][2].get("causal")
        pad = self._padded()
        if start is not None and causal:
            start -= pad  # (the cache holds a padded item's padding too)
        if start is None or start >= rows:
            how = self._continues_keys(index, query, key)
            return None if how is None else (how, rows, keys)
        q_len, k_len = query.shape[2], key.shape[2]
        if not causal:
            # (cross-attention: the cache counts the decoder's positions, the keys are the
            # encoder's, a padded item's padding among them)
            if q_len < k_len == keys + pad and self._holds_key(index, key, k_len - 1):
                return "same", start, keys
        elif keys == rows and q_len < k_len and 0 < k_len - q_len <= start and self._holds_key(
                index, key, k_len - q_len - 1, start - 1):
            return "new", start, start
        return None

    def _padded(self):
        """How many of the batch item's positions the capture leaves out as padding."""
        kept = self._kept
        if kept is None or kept.keys is None or isinstance(kept.keys, list):
            return 0
        return kept.length - kept.keys.shape[0]

    def _padding_continues(self, kept, how, q_len, k_len, keys):
        """Whether a pass over the KV cache of a left-padded batch item keeps the capture's
        padding (its mask ``kept``, as :func:`_padding` read it): its keys are the cache's
        last ones, padded as the capture's positions say (all of them, or a sliding window's
        last), then its new ones, none padded (a decode step of a padded batch's
        ``generate``); or, in cross-attention, the same keys as before. Where it does, the
        capture's positions take the new ones on, once a pass (its later layers, a window's
        or not, are checked against the positions before it). Anything else (the padding
        moved) is not continued. ``keys``: the kept keys the pass follows (fewer than held
        where speculative decoding's rejections were cut)."""
        import torch

        mine = self._kept
        if mine is None or mine.keys is None:
            return kept.rows is None and kept.keys is None
        if isinstance(mine.keys, list):
            return False
        if how == "same":
            return _same_kept(kept, mine)  # (cross-attention's encoder keys)
        if self._kept_before[0] == self._passes:
            mine = self._kept_before[1]
        else:
            self._cut_kept(keys)
            mine = self._kept
            self._kept_before = (self._passes, mine)
        old = k_len - q_len
        if old > mine.length:
            return False
        # the pass's keys: the cache's last `old` positions, then its new ones
        first = mine.length - old
        held = mine.keys[mine.keys >= first] - first
        want = torch.cat([held, torch.arange(old, k_len, device=held.device)])
        # (none of the pass's keys padded: a window past the padding)
        seen = torch.arange(k_len, device=held.device) if kept.keys is None else kept.keys
        if seen.shape != want.shape or not bool((seen.to(want.device) == want).all()):
            return False
        positions = torch.cat([mine.keys, torch.arange(mine.length, mine.length + q_len,
                                                       device=held.device)])
        self._kept = _Kept(positions, positions, mine.length + q_len)
        return True

    def _cut_to_cache(self):
        """After the last pass: speculative decoding cuts the cache back past the candidates
        its last pass rejected, and no later pass shows it. The capture ends where the cache
        it continued ends, as it would at the next pass."""
        end = _cache_length(self._cache)
        if end is None or self._problems:
            return
        # (the cache counts a padded item's padding; a cross-attention's rows, the decoder's
        # positions, have none)
        kept, causal_cut = end - self._padded(), False
        for index in self._records:
            causal = self._records[index][2].get("causal")
            if not causal and index not in self._continued:
                # (a layer that is not causal is in the cache's positions only where passes
                # over the cache continued it, cross-attention; an encoder's ran once, over
                # its own positions, and its rows are not the decoder's)
                continue
            rows = kept if causal else end
            if rows < self._rows_held(index):
                self._cut(index, rows, rows if causal else self._keys_held(index))
                causal_cut = causal_cut or causal
        if causal_cut:
            self._cut_kept(kept)  # (a cross-attention's positions are the encoder's)

    def _cut(self, index, rows, keys):
        """Cuts layer ``index`` back to its first ``rows`` rows and ``keys`` keys."""
        q, k, meta = self._records[index]
        tail = self._tails.get(index)

        def cut(held, appended, n):
            if appended is not None:
                appended.truncate(max(n - held.shape[1], 0))
            return held if n >= held.shape[1] else held[:, :n]

        q = cut(q, tail[0] if tail else None, rows)
        k = cut(k, tail[1] if tail else None, keys)
        self._records[index] = (q, k, meta)
        self._appended[index] = max(keys - k.shape[1], 0)
        spans = meta.get("bidirectional_spans")
        if spans:
            # Spans of the rows cut go with them. One the cut goes through had rows that saw
            # keys now gone (a rejected candidate's), which no mask of the rows kept stands for.
            through = [sp for sp in spans if sp[0] < rows < sp[1]]
            if through:
                self._problems[index] = (
                    "layer {}'s bidirectional span {}..{} lost its last positions to a cut of "
                    "the KV cache (speculative decoding's rejected candidates): its rows saw "
                    "keys the capture no longer holds; capture the whole sequence in one "
                    "forward pass".format(index, *through[0]))
            spans[:] = [sp for sp in spans if sp[1] <= rows]
            if not spans:
                del meta["bidirectional_spans"]

    def _cut_kept(self, keys):
        """Cuts a padded item's positions back to the first ``keys`` it kept, as its causal
        layers were cut: once a cut, not a layer at a time."""
        mine = self._kept
        if self._padded() and mine.keys.shape[0] > keys:
            kept = mine.keys[:keys]
            self._kept = _Kept(kept, kept, int(kept[-1]) + 1 if keys else self._padded())

    def _spill_problem(self, index, e):
        """Why layer ``index`` is not held in the ``spill=`` folder (``e``, the OSError: a full
        disk), recorded during the model's pass or raised when the capture is read."""
        return "spill={}: cannot hold layer {} there ({})".format(
            self._spill, index, e.strerror or e)

    def _last_key(self, index):
        """The last key layer ``index`` holds, (heads, d)."""
        tail = self._tails.get(index)
        return tail[1].last() if tail and tail[1] else self._records[index][1][:, -1]

    def _continues_keys(self, index, query, key):
        """How layer ``index``'s keys in a pass over a KV cache continue the keys it holds:
        ``"new"`` where the cache's keys end with one new key per new query and the key before
        those is the last one held (self-attention: a full cache holds every key before, a
        sliding-window cache the last ones), ``"same"`` where they are the keys it holds
        (cross-attention: every decoder step attends to the same encoder keys), else None.
        Compared by one key, so a long generation costs no pass over all of them."""
        q_len, k_len = query.shape[2], key.shape[2]
        # (counted as the cache does: a padded item's padding is in it, and not in the capture)
        held = self._cache_held(index)

        def is_last(position):
            return self._holds_key(index, key, position)

        if q_len < k_len and k_len - q_len <= held and is_last(k_len - q_len - 1):
            return "new"
        # (fewer queries than keys: as many, over the same keys, is the pass itself again, as
        # gradient checkpointing recomputes it in backward, and replaces it)
        if q_len < k_len == held and is_last(k_len - 1):
            return "same"
        return None

    def _holds_key(self, index, key, position, held=None):
        """Whether the pass's key at ``position`` (of the batch item captured) is the key layer
        ``index`` holds at ``held`` (its last, by default)."""
        import torch

        mine = self._last_key(index) if held is None else self._held_key(index, held)
        there = key[min(self._batch, key.shape[0] - 1), :, position].detach().to(mine.device)
        return there.shape == mine.shape and torch.equal(there, mine)

    def _shows_unwritten(self, index, query, key):
        """Why a pass over a static cache cannot continue the capture where its mask shows the
        cache's slots not yet written (transformers' flex attention does: the model then
        attends to those zero keys too, which no mask attnviz applies has), else None. Seen as
        more keys than the capture holds plus the pass's new ones, the last held among them
        at its position; a dynamic cache never gives more."""
        if index not in self._records:
            return None
        held, q_len, k_len = self._cache_held(index), query.shape[2], key.shape[2]
        if k_len <= held + q_len or not self._holds_key(index, key, held - 1):
            return None
        return ("layer {} ran a forward pass over a static KV cache whose mask lets its "
                "queries see {} of the cache's slots not yet written ({} keys given, {} "
                "written): the model attends to those empty keys too, so no mask of its tokens "
                "stands for it; generate with sdpa or eager attention, or with a dynamic "
                "cache".format(
                    index, k_len - held - q_len, k_len, held + q_len))

    def _continues(self, index, query, key):
        """Where a new pass, beginning at layer ``index``, continues the one recorded over the
        model's KV cache (a decode step of ``generate``, or a chunk of a long prefill): its
        :meth:`_placement` in that layer, else None (it starts over). A padded item's padding
        is checked against the pass's mask later, :meth:`_padding_continues`."""
        if (index not in self._records or self._problems or self._reordered is not None
                or self._batch >= query.shape[0]):
            return None
        return self._placement(index, query, key)

    def _filled(self, mask, q_len, k_len):
        """:func:`_filled` of this pass's ``mask`` for the batch item captured, read once per
        mask (the layers of one kind share it)."""
        if mask is None:
            # torch's scaled_dot_product_attention aligns is_causal top-left, query i with key
            # i, and transformers passes it no mask for a prefill into an empty static cache:
            # then no query sees a key past the last query's. (Flash attention aligns bottom-
            # right, and eager always gets a mask.)
            top_left = self._original == "sdpa" and 1 < q_len < k_len
            return q_len if top_left else k_len
        seen = ("filled", id(mask), q_len, k_len)
        hit = self._masks.get(seen)
        if hit is None or hit[0] is not mask:
            hit = (mask, _filled(mask, self._batch, q_len, k_len))
            self._masks[seen] = hit
        return hit[1]

    def _joined(self):
        """The records with every appended pass joined on."""
        import torch

        def joined(parts):
            if len(parts) == 1:
                return parts[0]
            if self._spill is None:
                return torch.cat(parts, dim=1)
            shape = list(parts[0].shape)
            shape[1] = sum(p.shape[1] for p in parts)
            out = _spilled_empty(shape, parts[0].dtype, self._spill)
            return torch.cat(parts, dim=1, out=out)

        for index, (qs, ks) in list(self._tails.items()):
            q, k, meta = self._records[index]
            # (one layer at a time: a spilled capture's old files go as its records do)
            try:
                self._records[index] = (joined([q] + qs.parts()), joined([k] + ks.parts()), meta)
            except OSError as e:
                raise ValueError(self._spill_problem(index, e)) from None
            # (so that reading again after a full disk joins each layer once)
            del self._tails[index]
            self._appended.pop(index, None)

    # -- what the model calls -----------------------------------------------------------------

    def _attention(self, module, query, key, value, attention_mask, *args, **kwargs):
        name = self._names.get(id(module))
        if name is not None:
            run, part = self._module_call(module, name)
            index = self._layer_index(module, name, run)
            if self._glob is not None and not fnmatch.fnmatchcase(name, self._glob):
                self._passed_over.add(name)
            elif self._wanted is not None and index not in self._wanted:
                self._unwanted.add(index)
            elif self._part is None and part > 1:
                self._join_part(index, name, part, query, key, attention_mask)
            else:
                if part == (self._part or 0) + 1:
                    self._record(index, module, query, key, attention_mask, kwargs)
                self._parts[index] = (name, part)  # (after: a new pass forgets the last's)
        inner = self._inner
        if inner is None:
            inner = getattr(sys.modules[type(module).__module__], "eager_attention_forward")
        return inner(module, query, key, value, attention_mask, *args, **kwargs)

    def _join_part(self, index, name, part, query, key, attention_mask):
        """Appends part ``part`` of layer ``index``'s attention (its module's ``part``-th call
        in the pass, a vision tower's next image or video frame) to the layer: parts of one
        size, each attending within itself, are the layer's attention chunks in a
        bidirectional layer (``_ordered`` settles them). Parts that are not (a causal layer's,
        a window's, a mask's, a generation's) are refused, as parts of other sizes are."""
        record = self._records.get(index)
        if record is None:
            return  # (its first part's problem says why)
        meta = record[2]
        sizes = self._part_sizes.setdefault(index, [record[0].shape[1]])
        if (meta.get("causal") or meta.get("sliding_window") or meta.get("attention_chunk_size")
                or self._continuing or attention_mask is not None
                or query.shape[2] != key.shape[2]
                or self._batch >= query.shape[0]):
            # (recorded, not raised: raising here would end the user's forward pass)
            self._problems[index] = _in_parts(index, name, part)
            return
        sizes.append(query.shape[2])
        qs, ks = self._tails.setdefault(index, (_Appended(self._spill), _Appended(self._spill)))
        try:
            qs.append(self._keep(query))
            ks.append(self._keep(key))
        except OSError as e:
            self._problems[index] = self._spill_problem(index, e)
            return
        self._appended[index] = self._appended.get(index, 0) + key.shape[2]

    def _keep(self, x, axis_positions=None, spill=None):
        """The batch item's copy of ``x`` (a call's query or key), at ``axis_positions`` along
        its sequence (None: all), in the ``spill`` folder or on ``device``."""
        x = x[self._batch].detach()
        # (index_select copies: the kept positions need no second copy)
        selected = axis_positions is not None
        if selected:
            x = x.index_select(1, axis_positions)
        if spill is not None:
            return _spilled(x, spill)
        if self._device is None:
            return x if selected else x.clone()
        return x.to(self._device, copy=not selected)

    def _record(self, index, module, query, key, attention_mask, kwargs):
        causal = getattr(module, "is_causal", None)
        if kwargs.get("is_causal") is not None:
            causal = bool(kwargs["is_causal"])
        causal = None if causal is None else bool(causal)
        # Over a static cache every pass gets the whole cache: its slots after the tokens are
        # left out here, so the pass is what a dynamic cache would have given.
        if causal:
            key = key[:, :, :self._filled(attention_mask, query.shape[2], key.shape[2])]
            # (attention_mask keeps its columns: _padding reads the first keys' only)
        elif causal is False and attention_mask is not None:
            # A module that says it is not causal over a static cache (PaliGemma's, whose mask
            # is the prefix-LM's): the slots after the tokens are left out where the written
            # ones end at the pass's last query, as a self-attention pass over a cache's do
            # (its new keys are its queries'); a cross-attention's keys, an encoder's tokens,
            # end there only by chance, and then only its padding would go, as _padding would
            # leave it out.
            filled = self._filled(attention_mask, query.shape[2], key.shape[2])
            before = self._cache_held(index)
            if filled < key.shape[2] and filled == before + query.shape[2]:
                key = key[:, :, :filled]
        owner = self._owners.get(index)
        placement = None  # (where the pass's first layer goes, found once)
        if owner is module:
            # A new forward pass: it continues the one recorded (a decode step), or starts over.
            placement = self._continues(index, query, key)
            if placement is not None:
                self._owners, self._masks, self._continuing = {}, {}, True
                self._passes += 1
            else:
                unwritten = self._shows_unwritten(index, query, key)
                self._start_pass()
                if self._reordered is not None:
                    self._broken = _reordered(index, self._batch, self._reordered)
                    self._problems[index] = self._broken
                elif query.shape[2] < key.shape[2] and causal is not False:
                    # Over a KV cache, yet not continuing: the capture would hold this pass's
                    # few rows alone, where the user ran a generation. (A layer that says it is
                    # not causal, cross-attention, has fewer queries than keys in every pass.)
                    self._broken = self._broken or unwritten or _not_continued(index)
                    self._problems[index] = self._broken
                else:
                    self._broken = None
        elif owner is not None:
            first = self._names[id(owner)]
            self._problems.setdefault(index, (
                "layer {} is run by both {} and {}: the model has more than one attention "
                "module per layer (an encoder-decoder's stacks, or self- and cross-attention); "
                "pick one kind with modules=, a glob over their names such as {!r}").format(
                    index, first, self._names[id(module)], _stack(first)))
            return
        self._owners[index] = module
        if self._batch >= query.shape[0]:
            # (recorded, not raised: raising here would end the user's forward pass)
            self._problems[index] = "batch={}, but the model ran a batch of {}".format(
                self._batch, query.shape[0])
            return
        b = self._batch

        scaling = kwargs.get("scaling", getattr(module, "scaling", None))
        window = kwargs.get("sliding_window", getattr(module, "sliding_window", None))
        softcap = kwargs.get("softcap", getattr(module, "attn_logit_softcapping", None))
        sinks = kwargs.get("s_aux", getattr(module, "sinks", None))
        beyond = _beyond_q_and_k(kwargs, query.shape[2], key.shape[2])
        if beyond is not None:
            # (recorded, not raised, as above; nothing of the layer is kept)
            self._problems[index] = (
                "layer {} {}: attnviz cannot recompute its attention from Q and K; draw the "
                "model's own probabilities instead (output_attentions=True under eager "
                "attention, saved as .npy or .safetensors)".format(index, beyond))
            return
        if sinks is None and _is_tensor(kwargs.get("sinks")):
            sinks = kwargs["sinks"]  # (one a head, as s_aux: _beyond_q_and_k refused others)
        if sinks is not None and self._sinks_dropped and not self._sinks_warned:
            self._sinks_warned = True
            warnings.warn(_sinks_left_out(self.model, self._original), stacklevel=2)
        window = None if not window else int(window)
        chunk = _attention_chunk(module, index)
        # Chunks are counted in positions: where a pass over the KV cache continues the
        # capture, its first key is the position after those held less the cache's others.
        first = 0
        if chunk is not None and self._continuing and index in self._records:
            first = self._keys_held(index) + query.shape[2] - key.shape[2]
        # Layers of one kind get the same mask tensor: read it once a pass. (The entry holds
        # the mask, so its id cannot be reused while the entry lives.)
        seen = (id(attention_mask), b, query.shape[2], key.shape[2], causal, window, chunk,
                first)
        hit = self._masks.get(seen)
        if hit is not None and hit[0] is attention_mask:
            kept, problem, causal, spans = hit[1]
        else:
            found = _padding(attention_mask, b, query.shape[2], key.shape[2], causal, window,
                             heads=query.shape[1], chunk=chunk, first=first)
            self._masks[seen] = (attention_mask, found)
            kept, problem, causal, spans = found
        if problem is None and any(kwargs.get(k) is not None for k in _PACKED):
            # Flash attention's varlen kernels: several documents in one row of the batch.
            problem = "packs several sequences into one (cu_seq_lens)"
        unlike_ours = problem is not None  # (the mask itself, not the capture's padding)
        # (a layer of another length is another sequence, or a part of one, joined with its
        # other parts: _ordered compares the lengths once the layers are whole)
        if (problem is None and self._kept is not None and not self._continuing
                and kept.length == self._kept.length and not _same_kept(kept, self._kept)):
            problem = "marks other positions as padding than layer {}'s does".format(
                min(self._records))
        if problem is not None:
            hint = _layer_type_hint(module, index)
            if unlike_ours and not hint:
                # (what the model's mask does, attnviz draws from the probabilities it made)
                hint = ("; draw the model's own probabilities instead (output_attentions=True "
                        "under eager attention, saved as .npy or .safetensors)")
            self._problems[index] = ("layer {}'s attention mask {}: attnviz cannot recompute it "
                                     "from Q and K{}".format(index, problem, hint))
        if self._kept is None:
            self._kept = kept

        if self._continuing:
            # Its rows and new keys go after the pass's: where the cache gave this layer other
            # keys (a sliding-window cache keeps only the last ones), the capture cannot stand
            # for the passes together, and says so.
            if index not in self._records:
                self._problems[index] = ("layer {} ran in a later pass over the KV cache but "
                                         "not in the first".format(index))
                return
            if placement is None:
                placement = self._placement(index, query, key)
            if placement is not None:
                how, rows, keys = placement
                self._cut(index, rows, keys)
            if placement is None or not self._padding_continues(
                    kept, how, query.shape[2], key.shape[2], keys):
                self._problems[index] = _not_continued(index)
                return
            if how == "new" and not (causal and self._records[index][2]["causal"]):
                spans = self._as_causal(index, causal, spans, kept, query.shape[2],
                                        key.shape[2])
                if index in self._problems:
                    return
            qs, ks = self._tails.setdefault(index, (_Appended(self._spill),
                                                    _Appended(self._spill)))
            self._continued.add(index)
            try:
                qs.append(self._keep(query))
                if how == "new":
                    ks.append(self._keep(key[:, :, key.shape[2] - query.shape[2]:]))
                    self._appended[index] = self._appended.get(index, 0) + query.shape[2]
            except OSError as e:
                self._problems[index] = self._spill_problem(index, e)  # (as below)
                return
            if spans:
                self._append_spans(index, spans, kept, key.shape[2])
            return
        try:
            q = self._keep(query, kept.rows, self._spill)
            k = self._keep(key, kept.keys, self._spill)
        except OSError as e:
            # (recorded, not raised, as above)
            self._problems[index] = self._spill_problem(index, e)
            return
        except (RuntimeError, AssertionError) as e:
            # a device torch knows but this machine lacks ("cuda" without CUDA), found only
            # when a layer is copied there: recorded, not raised inside the model's forward
            self._problems[index] = "device={!r}: cannot hold layer {} there ({})".format(
                self._device, index, _first_line(e))
            return
        meta = {
            "index": int(index),
            "scaling": None if scaling is None else float(scaling),
            "causal": causal,
            "sliding_window": window,
            "attention_chunk_size": chunk,
            "softcap": None if not softcap else float(softcap),
            "sinks": None if sinks is None else [float(s) for s in sinks.detach().float().cpu().reshape(-1)],
        }
        if spans:
            # (only where there are some: a reader that does not know the key meets it only
            # in a capture that needs it)
            meta["bidirectional_spans"] = spans
        self._records[index] = (q, k, meta)

    def _as_causal(self, index, causal, spans, kept, q_len, k_len):
        """A pass that appends new keys to layer ``index`` (a decode step, a chunk of a
        prefill) where the layer, or the pass's mask, is bidirectional: the queries before
        never saw the new keys, so the layer is causal, with what was bidirectional as a span.
        The first pass's positions, all of which its queries saw (a prompt that is PaliGemma's
        prefix whole, under a mask that shows every query every key), become one span; and
        this pass's rows (``causal`` False: its mask shows them all of its keys, those before
        them causally) one span of its own, returned in its keys kept (``kept`` of ``k_len``)
        as the spans it found are. A window or chunks of a bidirectional layer, or of such a
        pass's rows, reach ahead of a query in ways no span stands for: refused. (A pass of
        one query, a decode step, is causal whatever its mask is read as: its query is the
        last position.)"""
        meta = self._records[index][2]
        bidirectional = not meta["causal"] or (not causal and q_len >= 2)
        if bidirectional and (meta["sliding_window"] or meta["attention_chunk_size"]):
            self._problems[index] = (
                "layer {} is bidirectional with a sliding window or attention chunks, and a "
                "forward pass over the KV cache appended keys to it: its queries before never "
                "saw those keys, which no mask attnviz applies stands for; capture the whole "
                "sequence in one forward pass".format(index))
            return None
        if not meta["causal"]:
            meta["causal"] = True
            held = self._keys_held(index)
            if held >= 2:
                meta["bidirectional_spans"] = [[0, held]]
        if not causal:
            keys_n = k_len if kept.keys is None else len(kept.keys)
            spans = [[keys_n - q_len, keys_n]] if q_len >= 2 else None
        return spans

    def _append_spans(self, index, spans, kept, k_len):
        """Adds the bidirectional spans that a pass continuing layer ``index`` showed (in its
        keys kept, ``kept`` of ``k_len``) to the layer's, in the capture's positions: its keys
        kept are the capture's last (:meth:`_padding_continues` saw to it), and a span lies in
        its rows, the positions it appended (a span is what its rows see: one that an image cut
        between two passes began in the pass before holds the rows of this pass that see
        ahead)."""
        keys_n = k_len if kept.keys is None else len(kept.keys)
        meta = self._records[index][2]
        held = meta.setdefault("bidirectional_spans", [])
        shifted = _shifted_spans(spans, self._keys_held(index) - keys_n)
        if held and shifted[0][0] < held[-1][1]:
            # (rows before the pass's: it replaced rows held, which a cut should have gone)
            self._problems[index] = ("layer {}'s bidirectional spans in a pass over the KV "
                                     "cache overlap those before it ({}..{} and {}..{}): "
                                     "capture the whole sequence in one forward pass".format(
                                         index, held[-1][0], held[-1][1], *shifted[0]))
            return
        held.extend(shifted)

    # -- what the user reads ------------------------------------------------------------------

    def _ordered(self):
        if self._part:
            for index, (name, parts) in self._parts.items():
                if parts <= self._part:
                    self._problems.setdefault(index, _too_few_parts(index, name, parts,
                                                                    self._part))
        for index, sizes in self._part_sizes.items():
            if index in self._problems or index not in self._records:
                continue
            if len(set(sizes)) > 1:
                self._problems[index] = _in_parts(index, self._parts[index][0], len(sizes),
                                                  sizes)
            else:
                # (each part attends within itself: the joined layer's chunks)
                self._records[index][2]["attention_chunk_size"] = sizes[0]
        if self._records and not self._problems:
            lengths = {i: self._keys_held(i) for i in self._records}
            first = min(lengths)
            for index in sorted(lengths):
                if lengths[index] != lengths[first]:
                    self._problems[index] = (
                        "layer {} attends over {} positions, layer {} over {}: the layers of a "
                        "capture attend over one sequence; capture the layers of one length with "
                        "modules=".format(index, lengths[index], first, lengths[first]))
                    break
        if self._problems:
            raise ValueError("attnviz.capture: " + self._problems[min(self._problems)])
        if not self._records and getattr(self, "_passed_over", None):
            names = sorted(self._passed_over)
            raise ValueError(
                "attnviz.capture: no attention module that ran matched modules={!r} ({} ran: "
                "{}{})".format(self._glob, len(names), ", ".join(names[:4]),
                               ", ..." if len(names) > 4 else ""))
        if not self._records and getattr(self, "_unwanted", None):
            raise ValueError("attnviz.capture: no layer that ran is among layers={} (the layers "
                             "that ran: {})".format(self._wanted, _spans(self._unwanted)))
        if not self._records and getattr(self, "_ran", 0):
            raise ValueError(
                "attnviz.capture: {} ran, but none of its attention went through transformers' "
                "AttentionInterface (a model that computes its scores itself, e.g. with a "
                "relative position bias, as T5 does), so there are no queries and keys to "
                "recompute it from".format(self.model))
        if not self._records:
            raise ValueError("attnviz.capture: nothing captured (run the model inside the with block)")
        self._joined()
        return [self._records[i] for i in sorted(self._records)]

    @property
    def q(self):
        return [r[0] for r in self._ordered()]

    @property
    def k(self):
        return [r[1] for r in self._ordered()]

    @property
    def layers(self):
        out = [dict(r[2]) for r in self._ordered()]
        for layer in out:
            if layer.get("bidirectional_spans"):
                layer["bidirectional_spans"] = [list(sp) for sp in layer["bidirectional_spans"]]
        return out

    @property
    def positions(self):
        """The positions of the batch item's sequence that the capture holds, in order:
        ``None`` when it holds all of them; a list when the model's attention mask padded some
        out (a padded batch), which the capture leaves out of Q and K alike, since no query of
        the item sees them."""
        self._ordered()
        return self._kept.positions() if self._kept is not None else None

    def metadata(self, tokens=None):
        """The JSON string stored in a capture file (and passed to the renderer); ``tokens``
        default to the capture's own (a loaded file's)."""
        meta = {"format": _FORMAT, "model": self.model, "layers": self.layers}
        positions = self.positions
        if positions is not None:
            meta["padding"] = {"length": self._kept.length, "positions": positions}
        tokens = self.tokens if tokens is None else self._kept_tokens(tokens)
        if tokens is not None:
            meta["tokens"] = [str(t) for t in tokens]
        return json.dumps(meta)

    def _kept_tokens(self, tokens):
        """``tokens`` as the capture holds them: one per position kept, whether they are given
        for those or, from a padded batch, for the whole item (its padding then left out)."""
        tokens = list(tokens)
        kept = self.k[0].shape[1]
        positions = self.positions
        if positions is not None and len(tokens) == self._kept.length:
            return [tokens[p] for p in positions]
        if len(tokens) != kept:
            whole = "" if positions is None else " ({} with the padding)".format(self._kept.length)
            raise ValueError("tokens: {} tokens for {} positions{}".format(len(tokens), kept, whole))
        return tokens

    @classmethod
    def load(cls, path):
        """The capture a file holds (``save``'s, or ``attnviz synth-qk``'s), its Q and K read in
        place (memory-mapped numpy arrays, one per layer; bfloat16 kept as its bits), its
        layers' settings and tokens as saved: what ``render_qk``, ``figure_qk``, ``heads`` and
        ``Viewer`` take, on a machine other than the one that ran the model. A file that is
        not a capture, or whose header does not fit its size, raises ``ValueError`` naming
        it."""
        path = os.fspath(path)
        header, data_start, size = _read_header(path)
        meta = header.get("__metadata__", {}).get("attnviz")
        try:
            meta = json.loads(meta) if meta is not None else {}
            arrays = {name: _mapped(path, header, name, data_start, size) for name in ("q", "k")}
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise ValueError("{}: not a capture file ({})".format(path, e)) from None
        (q, q_bf16), (k, k_bf16) = arrays["q"], arrays["k"]
        if q.shape[0] != k.shape[0]:
            raise ValueError("{}: q holds {} layers, k {}".format(path, q.shape[0], k.shape[0]))
        layers = meta.get("layers") if isinstance(meta, dict) else None
        if not isinstance(layers, list) or len(layers) != q.shape[0]:
            layers = [{"index": i} for i in range(q.shape[0])]
        try:
            kept = _Kept.saved(meta.get("padding") if isinstance(meta, dict) else None,
                               k.shape[2])
        except ValueError as e:
            raise ValueError("{}: {}".format(path, e)) from None
        cap = cls.__new__(cls)
        cap._spill = None
        cap._part = None
        cap._start_pass()
        cap._kept = kept
        for i, settings in enumerate(layers):
            index = settings.get("index", i) if isinstance(settings, dict) else i
            keep = [_BF16Bits(x[i]) if bf16 else x[i] for x, bf16 in ((q, q_bf16), (k, k_bf16))]
            cap._records[index] = (keep[0], keep[1], dict(settings, index=index))
        cap.model = str(meta.get("model", "unknown model"))
        cap.tokens = meta.get("tokens")
        cap._saved = None
        return cap

    def tensors(self):
        """Q as (L, H, N, d) and K as (L, H_kv, N, d), stacked on the host in their dtype:
        torch tensors, or for a loaded capture numpy arrays (bfloat16 as a torch tensor, which
        numpy has no type for). A capture taken with ``spill=`` stacks into a file in that
        folder too (memory-mapped, as its layers are), so that asking for the whole capture
        does not bring back into memory what ``spill=`` kept out of it."""
        q, k = self.q, self.k
        try:
            return _stacked(q, self._spill), _stacked(k, self._spill)
        except OSError as e:
            raise ValueError("spill={}: cannot stack the capture there ({})".format(
                self._spill, e.strerror or e)) from None

    def save(self, path, tokens=None):
        """Writes ``q``, ``k`` and the metadata (and ``tokens``, one per position) to one
        ``.safetensors`` file that ``attnviz render PATH``, ``attnviz view PATH`` and
        ``Capture.load(PATH)`` read with no other flag. Written atomically: no partial file on
        failure.

        The file is written layer by layer, so saving takes one layer's worth of host memory
        beyond the capture itself: stacking the layers first, as ``tensors()`` does, would
        hold the whole capture twice (20 GiB for the Q and K of a 32-layer model at 32k
        tokens)."""
        path = os.fspath(path)
        records = self._ordered()
        qs, ks = [r[0] for r in records], [r[1] for r in records]
        tensors = {"q": qs, "k": ks}
        header = {"__metadata__": {"attnviz": self.metadata(tokens)}}
        end = 0
        for name, layers in tensors.items():
            dtype, shape = _layer_layout(name, layers)
            size = len(layers) * layers[0].numel() * layers[0].element_size()
            header[name] = {"dtype": dtype, "shape": [len(layers), *shape],
                            "data_offsets": [end, end + size]}
            end += size
        # The safetensors layout, written here because the safetensors package writes whole
        # tensors only: an 8-byte little-endian header length, the JSON header padded with
        # spaces to 8 bytes, then each tensor's bytes in the order of their offsets (q's
        # layers, then k's), little-endian and C-ordered.
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        tmp = path + ".tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(struct.pack("<Q", len(text)))
                f.write(text)
                for layers in tensors.values():
                    for t in layers:
                        f.write(_le_bytes(t))
                if f.tell() != 8 + len(text) + end:
                    raise AssertionError("capture file: wrote {} bytes, header says {}".format(
                        f.tell(), 8 + len(text) + end))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def __repr__(self):
        try:
            records = self._ordered()
        except ValueError as e:
            return "<attnviz.Capture of {}: {}>".format(
                self.model, str(e).replace("attnviz.capture: ", "", 1))
        q, k = records[0][0], records[0][1]
        dtype = "bfloat16" if isinstance(q, _BF16Bits) else str(q.dtype).replace("torch.", "")
        positions = self.positions
        padding = "" if positions is None else ", {} of {} positions (padding left out)".format(
            len(positions), self._kept.length)
        return "<attnviz.Capture of {}: {} layers, Q {}x{}x{}, K {} heads, {}{}>".format(
            self.model, len(records), q.shape[0], q.shape[1], q.shape[2], k.shape[0], dtype,
            padding)


def _spilled_empty(shape, dtype, folder):
    """An uninitialised tensor of ``shape`` backed by a file in ``folder``: shared memory
    mapped from it, so its pages are written to the file and can be dropped under memory
    pressure. The file is given all its blocks first (``posix_fallocate``), so a full disk is
    an ``OSError`` here and not a SIGBUS on some later write through the mapping; and it is
    unlinked once mapped (the mapping keeps it until the tensor goes), so nothing is left
    behind."""
    import tempfile

    import torch

    count = math.prod(int(d) for d in shape)
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    fd, name = tempfile.mkstemp(prefix="attnviz-capture-", suffix=".bin", dir=folder)
    try:
        size = count * torch.empty((), dtype=dtype).element_size()
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, size)
        else:
            os.ftruncate(fd, size)
        os.close(fd)
        fd = None
        out = torch.from_file(name, shared=True, size=count, dtype=dtype)
    finally:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(name)
        except OSError:
            # (a system that cannot unlink a mapped file: removed at exit instead)
            _LEFT.append(name)
    return out.view(shape)


class _Appended:
    """The rows that passes continuing a capture append to one layer's Q or K, in order along
    the sequence (dimension 1 of its ``(heads, n, d)``). In memory, a list of the passes'
    tensors; with ``spill=``, one file-backed buffer (:func:`_spilled_empty`), rows first,
    grown by doubling: a file a decode step and layer would be thousands of mappings, and
    holding the steps in memory until the capture is read would hold a long ``generate`` there
    (a 32-layer model with 32 query and 8 key heads of 128 dimensions appends 320 KiB of bf16
    a token), where ``spill=`` was asked to keep it out. Doubling copies each row at most
    twice more on average."""

    def __init__(self, spill):
        self._spill = spill
        self._parts = []
        self._rows = None
        self._count = 0

    def append(self, x):
        """Appends ``x``, ``(heads, t, d)`` on the host."""
        t = x.shape[1]
        if self._spill is None:
            self._parts.append(x)
            self._count += t
            return
        if self._rows is None or self._count + t > self._rows.shape[0]:
            room = max(_APPENDED_ROWS, 2 * (self._count + t))
            grown = _spilled_empty([room, x.shape[0], x.shape[2]], x.dtype, self._spill)
            if self._count:
                grown[:self._count] = self._rows[:self._count]
            self._rows = grown
        self._rows[self._count:self._count + t] = x.transpose(0, 1)
        self._count += t

    def __len__(self):
        return self._count

    def last(self):
        """The last row appended, ``(heads, d)``: read at every decode step, so at once."""
        return self._parts[-1][:, -1] if self._spill is None else self._rows[self._count - 1]

    def row(self, i):
        """Row ``i`` of those appended, ``(heads, d)``; found from the end, where a rewind of
        speculative decoding looks (a few candidates back)."""
        if self._spill is not None:
            return self._rows[i]
        end = self._count
        for part in reversed(self._parts):
            end -= part.shape[1]
            if i >= end:
                return part[:, i - end]
        raise IndexError(i)

    def truncate(self, n):
        """Keeps the first ``n`` rows."""
        if n >= self._count:
            return
        self._count = n
        if self._spill is not None:
            return
        kept = []
        for part in self._parts:
            if n <= 0:
                break
            kept.append(part if part.shape[1] <= n else part[:, :n])
            n -= part.shape[1]
        self._parts = kept

    def parts(self):
        """What was appended, as ``(heads, n, d)`` tensors in order."""
        if self._spill is None:
            return self._parts
        return [self._rows[:self._count].transpose(0, 1)] if self._count else []


# The rows a spilled layer's first appended buffer holds: a generation's first 64 tokens in one
# file, then 2× what it holds each time it fills.
_APPENDED_ROWS = 64


def _spilled(x, folder):
    """``x`` copied into a tensor in a file in ``folder`` (:func:`_spilled_empty`)."""
    out = _spilled_empty(list(x.shape), x.dtype, folder)
    out.copy_(x)
    return out


# Spill files that could not be unlinked while mapped, removed when the interpreter exits.
_LEFT = []


@atexit.register
def _remove_left():
    for name in _LEFT:
        try:
            os.unlink(name)
        except OSError:
            pass


def _is_int(v):
    """Whether ``v`` is an integer (a numpy one too), not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _spans(indices):
    """Sorted integers as runs: ``0-3, 7``."""
    runs = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else "{}-{}".format(a, b) for a, b in runs)


class _Kept:
    """The query rows and keys of the batch item a capture holds: all of them (``rows`` and
    ``keys`` ``None``), or, where the model's attention mask padded some positions out, the
    others, as index tensors on the mask's device (a list of positions, for a loaded file).
    ``length`` is the item's key count with its padding."""

    __slots__ = ("rows", "keys", "length")

    def __init__(self, rows, keys, length):
        self.rows, self.keys, self.length = rows, keys, length

    @classmethod
    def saved(cls, padding, keys):
        """What a capture file's ``padding`` says was kept (``{"length": n, "positions":
        [...]}``, which ``attnviz info`` reads too); all when it is missing. Only the positions
        are used (the file holds the rows and keys kept), so they stay a list."""
        if padding is None:
            return None
        positions = padding.get("positions") if isinstance(padding, dict) else None
        length = padding.get("length") if isinstance(padding, dict) else None
        if not isinstance(length, int) or not isinstance(positions, list) or not all(
                isinstance(p, int) for p in positions):
            raise ValueError("padding is not {\"length\": n, \"positions\": [...]}")
        if len(positions) != keys:
            raise ValueError("padding lists {} positions for {} keys".format(len(positions), keys))
        if any(a >= b for a, b in zip(positions, positions[1:])) or (
                positions and not 0 <= positions[0] <= positions[-1] < length):
            raise ValueError("padding positions must increase and stay below its length {}"
                             .format(length))
        return cls(None, positions, length)

    def positions(self):
        if self.keys is None or isinstance(self.keys, list):
            return self.keys
        return [int(p) for p in self.keys.tolist()]


def _same_kept(a, b):
    if (a.keys is None) != (b.keys is None) or a.length != b.length:
        return False
    return a.keys is None or (a.keys.shape == b.keys.shape and bool((a.keys == b.keys).all()))


# The keyword arguments flash attention's varlen path gets for packed sequences (documents side
# by side in one batch row, each attending to itself only).
_PACKED = ("cu_seq_lens_q", "cu_seq_lens_k", "cu_seqlens_q", "cu_seqlens_k")

# Keyword arguments of an attention call that pick, for each query, the keys it attends to
# (DeepSeek-V3.2's sparse attention, MiniMax's block selection): the scores of keys not picked
# are not part of the model's attention, and nothing in Q and K says which they are.
_KEY_SELECTIONS = ("indices", "block_indices", "topk_indices")

# Keyword arguments that are positions, not scores, whatever their shape happens to be (Qwen2-
# VL's three rows of positions, a prompt of one token).
_POSITIONS = ("position_ids", "cache_position")


def _cache_length(cache):
    """The length of the KV cache a forward pass is given (``cache=``, or ``past_key_values=``
    as transformers before 5 named it), that is the position of the pass's first query; None
    without one, or where the cache cannot say (a model's own cache class)."""
    length = getattr(cache, "get_seq_length", None)
    if length is None:
        return None
    try:
        return int(length())
    except Exception:
        # (a cache of linear-attention layers alone raises ValueError; a model's own cache
        # class may raise anything: then the pass's start is unknown, as without a cache)
        return None


def _is_tensor(x):
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "ndim")


def _beyond_q_and_k(kwargs, q_len, k_len):
    """What an attention call's keyword arguments add to its scores that a capture does not
    record (it records the scale, a sliding window, a softcap and one sink a head), else None.
    The rest of the call's arguments pass through to the model's attention untouched, so one
    that changes the scores would make the figure silently differ from the model's attention:
    T5's relative position bias (``position_bias``, 0.06 of probability off in a tiny T5),
    a selection of keys per query, a sink a query (Inkling's ``sinks``), or any other tensor
    shaped like the scores."""
    for name in _KEY_SELECTIONS:
        if kwargs.get(name) is not None:
            return ("attends to a selection of keys for each query ({}=, sparse "
                    "attention)".format(name))
    bias = kwargs.get("position_bias")
    if _is_tensor(bias) and bool((bias != 0).any()):
        return ("adds a position bias to its scores (position_bias=, as T5's relative "
                "positions do)")
    sinks = kwargs.get("sinks")
    if _is_tensor(sinks) and sinks.ndim > 1:
        return "gives each query a sink of its own (sinks= of shape {})".format(
            tuple(sinks.shape))
    for name, v in kwargs.items():
        if (name not in _POSITIONS and name != "position_bias" and _is_tensor(v)
                and v.ndim >= 3 and tuple(v.shape[-2:]) == (q_len, k_len)):
            return "passes {}=, a tensor of its scores' shape {}, to its attention".format(
                name, tuple(v.shape))
    return None


# Rows of a mask examined at once: the check holds a block of this many entries beside the
# model's own mask, whatever the sequence length.
_MASK_BLOCK = 1 << 22


def _visible(block):
    """Which entries of a block of the model's mask let a key through: a boolean mask as it
    is; an additive one where it is above -10000, the value older models add for a hidden key
    (transformers now adds its dtype's lowest value; either makes a probability 0)."""
    import torch

    if block.dtype == torch.bool:
        return block
    return block > -1e4


def _reordered(index, batch, beam):
    """Why a pass after beam search gave the batch item captured another beam's history cannot
    be joined to the passes before it."""
    return ("layer {} ran a forward pass after beam search gave batch item {} the history of "
            "beam {}: the rows held before belong to another sequence; capture greedy or "
            "sampled generation (num_beams=1), or the whole sequence in one forward "
            "pass".format(index, batch, beam))


def _not_continued(index):
    """Why a forward pass over the KV cache cannot be joined to the pass before it."""
    return ("layer {} ran a forward pass over a KV cache whose keys do not continue those the "
            "capture holds (a padded batch item whose padding moved; beam search, which "
            "reorders the cache; or a cache filled outside the with block): "
            "capture one item's greedy or sampled generation, as python -m attnviz capture "
            "--generate does, or the whole sequence in one forward pass".format(index))


def _stack(name):
    """The stack of layers the module named ``name`` belongs to: its name with each number in
    it a wildcard (``encoder.layers.*.attention``), as a glob for ``modules=``."""
    return re.sub(r"\.\d+(\.|$)", r".*\1", name)


def _stack_owner(name):
    """The name of the module that holds the stack ``name`` is in: the parent of the first
    numbered list in it (``model.visual`` for ``model.visual.blocks.0.attn``), else the
    module's parent ("" is the model)."""
    parts = name.split(".")
    numbered = [i for i, p in enumerate(parts) if p.isdigit()]
    return ".".join(parts[:max(numbered[0] - 1, 0)] if numbered else parts[:-1])


def _pre_hook(module, hook):
    """``hook`` registered to run before each forward run of ``module``; None where it takes
    no hooks."""
    try:
        return module.register_forward_pre_hook(hook)
    except AttributeError:
        return None


def _in_parts(index, name, parts, sizes=None):
    """Why a layer whose attention ran as several calls in one pass is not captured: each call
    is one part of the sequence (an image, a video frame, a window), the layer a
    block-diagonal attention over them, which attnviz draws as one layer in attention chunks
    where the parts are of one size and attend within themselves."""
    of = "" if sizes is None else " of {} positions".format(_listed(sizes))
    return ("layer {} ({}) ran its attention in {} parts{}, one call for each (the images, "
            "video frames or windows a vision tower attends within, as Qwen2-VL's does): "
            "attnviz draws parts of one size, each attending within itself, as one layer in "
            "attention chunks, and no other; capture one part with part= (part=0 the first "
            "image's), give the model images of one size, or capture other modules with "
            "modules=".format(index, name, parts, of))


def _listed(sizes):
    """``[64, 64, 16]`` as "64, 64 and 16" (the first 6, then "...")."""
    words = [str(s) for s in sizes[:6]] + (["..."] if len(sizes) > 6 else [])
    return words[0] if len(words) == 1 else "{} and {}".format(", ".join(words[:-1]), words[-1])


def _too_few_parts(index, name, parts, part):
    """Why ``part=`` finds nothing to keep of layer ``index``."""
    return ("layer {} ({}) ran its attention in {} part{}, so part={} (the {} part) is not "
            "there: capture the modules that run in that many with modules=".format(
                index, name, parts, "" if parts == 1 else "s", part, _ordinal(part + 1)))


def _ordinal(n):
    return "{}{}".format(n, "th" if 10 <= n % 100 <= 20 else
                         {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th"))


# The attention kinds of a config's ``layer_types`` that attnviz recomputes: causal or not,
# with the layer's sliding window, or in attention chunks (Llama 4).
_RECOMPUTED_TYPES = ("full_attention", "sliding_attention", "chunked_attention")


def _layer_types(module, index):
    """The model config's ``layer_types`` (each layer's kind of attention) where it has one
    for layer ``index``, else None."""
    types = getattr(getattr(module, "config", None), "layer_types", None)
    if not isinstance(types, (list, tuple)) or not 0 <= index < len(types):
        return None
    return types


def _attention_chunk(module, index):
    """Layer ``index``'s attention chunk size where its model's config makes it a
    ``chunked_attention`` layer (Llama 4: ``layer_types`` and ``attention_chunk_size``, which
    the attention module itself does not carry), else None."""
    types = _layer_types(module, index)
    if types is None or types[index] != "chunked_attention":
        return None
    chunk = getattr(module.config, "attention_chunk_size", None)
    return int(chunk) if chunk else None


def _layer_type_hint(module, index):
    """For a layer whose mask attnviz cannot recompute, what its model's config says the layer
    is (``layer_types``, such as a kind attnviz does not know) and which layers attnviz can
    take instead, as ``layers=`` names them; "" where the config does not say."""
    types = _layer_types(module, index)
    if types is None:
        return ""
    kind = types[index]
    if kind in _RECOMPUTED_TYPES:
        return ""
    usable = [i for i, t in enumerate(types) if t in _RECOMPUTED_TYPES]
    if not usable:
        return "; the model's config makes it a {!r} layer".format(kind)
    kinds = sorted({types[i] for i in usable})
    kinds = " and ".join(filter(None, [", ".join(kinds[:-1]), kinds[-1]]))
    return ("; the model's config makes it a {!r} layer, which attnviz does not recompute: "
            "capture its {} layers instead, layers={}".format(kind, kinds, usable))


def _padding(mask, b, q_len, k_len, causal, window, heads=1, chunk=None, first=0):
    """Batch item ``b``'s padding as the model's attention mask shows it, what in that mask
    attnviz cannot recompute (``None`` when nothing), whether the layer is causal (as
    ``causal`` says, or where it is ``None``, the module not saying, as the mask does) and the
    layer's bidirectional spans (``[[s, e], ...]`` in the positions kept, or ``None``).

    A key that no query sees is padding; in self-attention (as many queries as keys) the query
    at its position is too, and both are left out. What the mask shows of the positions kept
    must then be the mask attnviz applies (causal or not, with the layer's sliding window or
    attention chunks of ``chunk`` positions, the mask's first key at position ``first``),
    with no bias added to the scores: otherwise the capture could not stand for the model's
    attention, and saying so beats drawing something else. A causal mask (one of a window
    too, not of chunks) may show each query of a span of positions the span's later keys as
    well (:func:`_bidirectional_spans`: Gemma-3's images, PaliGemma's prefix); such a mask
    makes the layer causal with those spans even where its module says it is not (PaliGemma's
    does), as a full mask, tensor or rule, is what the model's attention applies. The mask is
    read in blocks of rows, so checking it takes a block's memory beside the mask the model
    built."""
    import torch

    everything = _Kept(None, None, k_len)
    if mask is None:
        # No mask: the model lets the kernel apply causality.
        return everything, None, causal, None
    if not isinstance(mask, torch.Tensor):
        if not callable(getattr(mask, "mask_mod", None)):
            return everything, "is a {}, which attnviz cannot read".format(
                type(mask).__name__), causal, None
        # Flex attention's BlockMask: its rule, evaluated a block of rows at a time.
        device = getattr(getattr(mask, "kv_num_blocks", None), "device", None)
        rows = _RuleRows(mask.mask_mod, b, q_len, k_len, device or torch.device("cpu"))
        if rows.differs_between_heads(heads):
            return everything, "differs between heads", causal, None
        return _checked(rows, q_len, k_len, causal, window, chunk, first)
    item = mask[min(b, mask.shape[0] - 1)]
    if item.dim() == 1:
        # Flash attention's (batch, keys) padding mask: 1 where a key is a token.
        seen = item[:k_len].bool()
        if bool(seen.all()):
            return everything, None, causal, None
        keys = seen.nonzero().flatten()
        return _Kept(keys if q_len == k_len else None, keys, k_len), None, causal, None
    if item.dim() == 3 and item.shape[-2] == 1:
        # A padding mask broadcast over the queries, (batch, 1, 1, keys): a view of every row.
        item = item.expand(item.shape[0], q_len, item.shape[-1])
    if item.dim() != 3 or item.shape[-2] != q_len or item.shape[-1] < k_len:
        return everything, "has shape {}, not (batch, heads, {}, {})".format(
            tuple(mask.shape), q_len, k_len), causal, None
    if item.shape[0] > 1 and not bool((item == item[:1]).all()):
        return everything, "differs between heads", causal, None
    return _checked(item[0, :, :k_len], q_len, k_len, causal, window, chunk, first)


def _filled(mask, b, q_len, k_len):
    """How many of the ``k_len`` keys a causal pass over a KV cache is given hold tokens: all of
    them, except over a static cache (``generate(cache_implementation="static")``, which
    ``torch.compile`` wants), where every pass gets the cache's every slot and the mask hides
    those not yet written from each query: then the keys before the first of those. Read from
    the mask's last row (under a causal mask the row that sees the most keys); the slots
    after are taken as unwritten only where no row sees any of them, checked a block of rows
    at a time. A pass with as many queries as keys is never over a cache: its hidden tail is
    padding, left out as such by :func:`_padding`."""
    import torch

    if q_len >= k_len:
        return k_len
    if isinstance(mask, torch.Tensor):
        item = mask[min(b, mask.shape[0] - 1)]
        if item.dim() == 1:
            # flash attention's (batch, keys) mask: the same keys for every row
            rows = item[None, :k_len].bool()
        elif item.dim() == 3:
            # (heads or 1, rows or 1, keys): head 0's (_padding refuses heads that differ)
            rows = item[0, :, :k_len]
        else:
            return k_len
    elif callable(getattr(mask, "mask_mod", None)):
        device = getattr(getattr(mask, "kv_num_blocks", None), "device", None)
        rows = _RuleRows(mask.mask_mod, b, q_len, k_len, device or torch.device("cpu"))
    else:
        return k_len
    last = _visible(rows[-1:]).reshape(-1)[:k_len].nonzero()
    if len(last) == 0:
        return k_len
    filled = int(last[-1]) + 1
    if filled == k_len:
        return k_len
    n = rows.shape[0]
    step = max(1, _MASK_BLOCK // (k_len - filled))
    for r in range(0, n, step):
        if bool(_visible(rows[r:r + step][:, filled:k_len]).any()):
            return k_len
    return filled


def _checked(item, q_len, k_len, causal, window, chunk=None, first=0):
    """:func:`_padding` of one item's (queries, keys) mask: a tensor, or the rows of a rule
    (:class:`_RuleRows`)."""
    import torch

    everything = _Kept(None, None, k_len)
    step = max(1, _MASK_BLOCK // k_len)
    keys_seen = torch.zeros(k_len, dtype=torch.bool, device=item.device)
    rows_seen = torch.zeros(q_len, dtype=torch.bool, device=item.device)
    # Attention chunks hide a cache's keys of the chunk before from every query of a decode
    # step: those keys are not padding (the other masks hide no key from every query of a pass
    # whose cache holds only what they show; where there are as many queries as keys, each key
    # is its own query's).
    hidden = None
    if chunk is not None and q_len < k_len:
        hidden = torch.ones(k_len, dtype=torch.bool, device=item.device)
        key = torch.arange(k_len, device=item.device)[None, :]
    for r in range(0, q_len, step):
        block = item[r:r + step]
        seen = _visible(block)
        if block.dtype != torch.bool and bool(block.masked_fill(~seen, 0).any()):
            return (everything, "adds a bias to the scores (ALiBi or relative positions)",
                    causal, None)
        keys_seen |= seen.any(0)
        rows_seen[r:r + step] = seen.any(1)
        if hidden is not None:
            at = torch.arange(r, r + block.shape[0], device=item.device)[:, None] + k_len - q_len
            hidden &= ~_shown(at, key, causal is not False, window, chunk, first).any(0)
    if hidden is not None:
        keys_seen |= hidden
    keys = None if bool(keys_seen.all()) else keys_seen.nonzero().flatten()
    if q_len == k_len:
        rows = keys
    else:
        rows = None if bool(rows_seen.all()) else rows_seen.nonzero().flatten()
    kept = _Kept(rows, keys, k_len)
    if causal is None:
        # The module does not say (no ``is_causal``): the mask does, if it is either.
        if _mask_problem(item, kept, q_len, True, window, chunk, first) is None:
            return kept, None, True, None
        causal = False
    problem = _mask_problem(item, kept, q_len, causal, window, chunk, first)
    if problem is None:
        return kept, None, causal, None
    # A causal mask that shows more, each query the keys of its span too (an image's tokens,
    # a prefix): the layer is causal with those spans, whatever its module says (PaliGemma's
    # say ``is_causal`` False, its config asking for bidirectional attention, while its mask
    # is the prefix-LM's; or causal with none, given no ``token_type_ids``).
    spans = _bidirectional_spans(item, kept, q_len, window, chunk, first)
    if spans is None:
        return kept, problem, causal, None
    if chunk is not None and spans:
        return kept, ("shows each query the keys of its span of positions ({}) besides its "
                      "causal chunk's ({}): attnviz recomputes such spans (bidirectional image "
                      "tokens, a prefix) in causal layers without attention chunks only".format(
                          _listed(["{}..{}".format(a, b) for a, b in spans]), chunk)), causal, None
    return kept, None, True, spans or None


class _RuleRows:
    """The (queries, keys) mask of batch item ``b`` that a flex-attention ``mask_mod`` rule
    defines, read as a boolean tensor is read by rows (a slice, or ``index_select`` on the
    rows): each block of rows evaluated on demand, so the dense N² mask never exists. The rule
    is evaluated for head 0, as transformers' rules do not depend on the head; a rule that
    does is found on sample rows (:meth:`differs_between_heads`) and refused as a tensor mask
    that differs between heads is."""

    #: Rows, spread over the head, on which every head's rule is compared with head 0's.
    SAMPLE_ROWS = 64

    def __init__(self, rule, b, q_len, k_len, device):
        import torch

        self.rule, self.shape, self.device, self.dtype = rule, (q_len, k_len), device, torch.bool
        self.b, self.h = torch.tensor(b, device=device), torch.tensor(0, device=device)
        self._keys = torch.arange(k_len, device=device)[None, :]

    def _rows(self, rows, head=None):
        """The rule's mask of ``rows`` (an index tensor) for ``head`` (a tensor; head 0's
        without), every key."""
        import torch

        out = self.rule(self.b, self.h if head is None else head, rows[:, None], self._keys)
        return torch.as_tensor(out, dtype=torch.bool).expand(len(rows), self.shape[1])

    def __getitem__(self, rows):
        import torch

        return self._rows(torch.arange(self.shape[0], device=self.device)[rows])

    def index_select(self, dim, rows):
        assert dim == 0
        return self._rows(rows.to(self.device))

    def differs_between_heads(self, heads):
        """Whether the rule gives any of ``heads`` another mask than head 0's, on
        :attr:`SAMPLE_ROWS` rows spread evenly over the queries (first and last included),
        every key: a rule written per head (each head its own window) shows it on most rows,
        at a cost of ``heads × SAMPLE_ROWS`` rows of the rule."""
        import torch

        q_len = self.shape[0]
        n = min(q_len, self.SAMPLE_ROWS)
        rows = torch.linspace(0, q_len - 1, n, device=self.device).round().long().unique()
        first = self._rows(rows)
        return any(not torch.equal(self._rows(rows, torch.tensor(h, device=self.device)), first)
                   for h in range(1, heads))


def _shown(at, key, causal, window, chunk, first, span_of=None):
    """Which ``key`` (a row of key indices) the rows at positions ``at`` (a column) see under
    attnviz's mask: see :func:`_mask_problem`. ``span_of``: each position's bidirectional span
    (its index in the layer's spans, -1 outside them; :func:`_span_ids`), whose keys a query
    in the span sees besides those the mask shows it."""
    import torch

    shown = torch.ones(at.shape[0], key.shape[1], dtype=torch.bool, device=key.device)
    if causal:
        shown &= key <= at
    if window is not None:
        shown &= key > at - window
        if not causal:
            # a bidirectional layer's window is two-sided (ModernBERT's local layers)
            shown &= key < at + window
    if chunk is not None:
        shown &= (key + first) // chunk == (at + first) // chunk
    if span_of is not None:
        mine = span_of[at]
        shown |= (mine >= 0) & (mine == span_of[key])
    return shown


def _span_ids(spans, n, device):
    """Each of ``n`` positions' span among ``spans`` (``[[s, e], ...]``, sorted and disjoint)
    as its index there, -1 outside every span: O(n), beside the mask's blocks."""
    import torch

    ids = torch.full((n,), -1, dtype=torch.long, device=device)
    for i, (s, e) in enumerate(spans):
        ids[s:e] = i
    return ids


def _mask_problem(item, kept, q_len, causal, window, chunk=None, first=0, spans=None):
    """How the mask of the positions kept differs from attnviz's causal, sliding-window or
    chunked mask (``None`` when it does not): row ``q`` sits at position ``q + K − Q`` and sees
    key ``k`` when ``k`` is at most that position (causal), less than ``window`` behind it (and,
    not causal, less than ``window`` ahead of it: a bidirectional window is two-sided), and
    in its chunk of ``chunk`` positions, counted from ``first``, the position of key 0 (chunks
    start at multiples of ``chunk``, as the capture's keys count them); or, with ``spans``
    (``[[s, e], ...]`` in the positions kept), when both it and ``k`` are in one span."""
    import torch

    rows = kept.rows if kept.rows is not None else torch.arange(q_len, device=item.device)
    keys_n = item.shape[1] if kept.keys is None else len(kept.keys)
    shift = keys_n - len(rows)
    key = torch.arange(keys_n, device=item.device)[None, :]
    span_of = None if not spans else _span_ids(spans, keys_n, item.device)
    step = max(1, _MASK_BLOCK // keys_n)
    for r in range(0, len(rows), step):
        block = item.index_select(0, rows[r:r + step])
        if kept.keys is not None:
            block = block.index_select(1, kept.keys)
        at = torch.arange(r, r + block.shape[0], device=item.device)[:, None] + shift
        expected = _shown(at, key, causal, window, chunk, first, span_of)
        if not torch.equal(_visible(block), expected):
            kind = "causal" if causal else "bidirectional"
            if window is not None:
                kind += " sliding-window ({})".format(window)
            if chunk is not None:
                kind += " chunked ({})".format(chunk)
            return ("hides or shows keys that a {} mask would not (packed sequences, "
                    "bidirectional image tokens or a custom 4D mask)".format(kind))
    return None


def _bidirectional_spans(item, kept, q_len, window, chunk=None, first=0):
    """The bidirectional spans of a causal mask (``[[s, e], ...]``, in the positions kept,
    sorted and disjoint, each of two positions or more) that make it the model's: a query at a
    position ``a`` in ``[s, e)`` sees every key of its span besides what the causal mask (with
    the layer's window and chunks) shows it, as transformers' ``or_mask_function`` and
    ``block_sequence_ids`` give an image's tokens (Gemma-3, Gemma-4) or a prefix (PaliGemma's
    prefix-LM, whose one span is its image and prompt); ``[]`` where the mask is causal with
    none; ``None`` where no such spans make it the mask.

    Read from the rows alone: each row's end (1 + the last key it sees) is past its position
    only in a span, and the same for the rows of one span, ``e``; a maximal run of rows that
    look ahead to one ``e`` from the row at ``s`` is the span ``[s, e)`` (its last row, at
    ``e - 1``, looks no further than a causal row). A span is what its rows see, so a mask
    whose padding was left out is read as the capture holds it: the span of the positions kept.
    Then the whole mask is compared with the causal mask and these spans, as
    :func:`_mask_problem` compares any mask: spans that overlap, a row that sees ahead
    outside a span, a span's row that does not see all of it, or any other difference is no
    set of spans. Two passes over the mask a block of rows at a time (the ends as int32, a
    quarter of the block's rows, so a block takes :data:`_MASK_BLOCK` bytes as the boolean
    block does), and the ends O(N)."""
    import torch

    rows = kept.rows if kept.rows is not None else torch.arange(q_len, device=item.device)
    keys_n = item.shape[1] if kept.keys is None else len(kept.keys)
    n = len(rows)
    if n == 0 or keys_n == 0:
        return None
    shift = keys_n - n
    ends = torch.empty(n, dtype=torch.int32, device=item.device)
    after = torch.arange(1, keys_n + 1, dtype=torch.int32, device=item.device)[None, :]
    step = max(1, _MASK_BLOCK // (4 * keys_n))
    for r in range(0, n, step):
        block = item.index_select(0, rows[r:r + step])
        if kept.keys is not None:
            block = block.index_select(1, kept.keys)
        ends[r:r + block.shape[0]] = torch.where(_visible(block), after, 0).amax(1)
    at = torch.arange(n, device=item.device) + shift
    ahead = (ends > at + 1).nonzero().flatten()
    if len(ahead) == 0:
        # (none: a causal mask, or not one at all; [] for a causal one, which a layer whose
        # module says it is not causal was checked against as bidirectional first)
        return [] if _mask_problem(item, kept, q_len, True, window, chunk, first) is None else None
    end = ends[ahead]
    # a run starts where the row before it does not look ahead, or to another end
    starts = torch.ones(len(ahead), dtype=torch.bool, device=item.device)
    starts[1:] = (ahead[1:] != ahead[:-1] + 1) | (end[1:] != end[:-1])
    spans = [[int(s), int(e)] for s, e in zip((at[ahead][starts]).tolist(),
                                               end[starts].tolist())]
    if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
        return None  # (overlapping: a row sees ahead past the next span's first row)
    if _mask_problem(item, kept, q_len, True, window, chunk, first, spans) is not None:
        return None
    return spans


def _shifted_spans(spans, by):
    """``spans`` moved ``by`` positions along."""
    return [[s + by, e + by] for s, e in spans]


class _BF16Bits:
    """A loaded layer in bfloat16, which numpy has no type for: its bits, a uint16 array in
    ``bits``, marked so that the renderer reads them as bfloat16 (``attnviz._to_numpy``)."""

    __slots__ = ("bits",)

    def __init__(self, bits):
        self.bits = bits

    @property
    def shape(self):
        return self.bits.shape

    @property
    def dtype(self):
        return "bfloat16"


def _stacked(layers, spill=None):
    """One tensor of ``layers`` (torch tensors, numpy arrays or a loaded file's bfloat16 bits);
    torch tensors stacked into a file in the folder ``spill`` where one is given
    (:func:`_spilled_empty`)."""
    if isinstance(layers[0], _BF16Bits):
        import torch

        bits = np.stack([x.bits for x in layers]).view(np.int16)
        return torch.from_numpy(bits).view(torch.bfloat16)
    if isinstance(layers[0], np.ndarray):
        return np.stack(layers)
    import torch

    if spill is not None:
        out = _spilled_empty([len(layers), *layers[0].shape], layers[0].dtype, spill)
        return torch.stack(layers, out=out)
    return torch.stack([x.cpu() for x in layers])


_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


def _read_header(path):
    """A safetensors file's header (checked against the file's size before it is read), where
    its data starts, and the file's size."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than a safetensors header")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError("its header says {} bytes, the file has {}".format(n, size - 8))
            header = json.loads(f.read(n))
    except OSError as e:
        raise ValueError("{}: cannot read it ({})".format(path, e.strerror or e)) from None
    except ValueError as e:
        raise ValueError("{}: not a safetensors file ({})".format(path, e)) from None
    if not isinstance(header, dict):
        raise ValueError("{}: not a safetensors file (its header is not an object)".format(path))
    return header, 8 + n, size


def _mapped(path, header, name, data_start, size):
    """Tensor ``name`` of the file as a read-only memory map, (L, H, N, d) (fewer dimensions
    are one layer, one head), and whether it holds bfloat16 bits."""
    info = header.get(name)
    if not isinstance(info, dict):
        raise ValueError("no tensor {!r}".format(name))
    dtype = _DTYPES.get(info.get("dtype"))
    if dtype is None:
        raise ValueError("{} is {}, not F32, F16, BF16 or F64".format(name, info.get("dtype")))
    shape = [int(d) for d in info["shape"]]
    if not 2 <= len(shape) <= 4 or min(shape) < 1:
        raise ValueError("{} has shape {}, not (L, H, N, d)".format(name, shape))
    start, end = (int(o) for o in info["data_offsets"])
    count = 1
    for d in shape:
        count *= d
    if end - start != count * np.dtype(dtype).itemsize or end > size - data_start or start < 0:
        raise ValueError("{}'s bytes {}..{} do not hold {} {} values within the file".format(
            name, start, end, count, info["dtype"]))
    shape = [1] * (4 - len(shape)) + shape
    return np.memmap(path, dtype=dtype, mode="r", offset=data_start + start,
                     shape=tuple(shape)), info["dtype"] == "BF16"


def _held_model(model):
    """The transformers model to capture in ``model``: ``model`` itself, or the one model a
    wrapper holds, where the user's object is not a transformers model but holds one, as
    torch.compile's wrapper (``_orig_mod``), a SentenceTransformer (``0.auto_model``), PEFT's
    adapters (``base_model.model``) and a transformers pipeline (``model``) do. The held model's config, modules and forward
    hooks are what the capture installs itself on, and its module names are what
    ``modules=`` matches. (Each wrapper was refused as a model that does not dispatch through
    the interface.) A wrapper holding several raises ``ValueError`` naming them."""
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return model
    if isinstance(model, PreTrainedModel):
        return model
    if not hasattr(model, "named_modules"):
        # (a transformers pipeline: not a module, its model at .model)
        inner = getattr(model, "model", None)
        return inner if isinstance(inner, PreTrainedModel) else model
    held = []
    for name, module in model.named_modules():
        if isinstance(module, PreTrainedModel) and not any(
                name.startswith(outer + ".") for outer, _ in held):
            held.append((name, module))
    if len(held) > 1:
        raise ValueError(
            "attnviz.capture: {} holds {} transformers models ({}): pass the one to capture, "
            "e.g. attnviz.capture(model{})".format(
                type(model).__name__, len(held),
                ", ".join("{} ({})".format(n, type(m).__name__) for n, m in held[:4]),
                _attribute_path(held[0][0])))
    return held[0][1] if held else model


def _attribute_path(name):
    """``name`` of ``named_modules()`` as Python reaches it from its holder (``0.auto_model``
    as ``[0].auto_model``, ``encoder`` as ``.encoder``)."""
    return re.sub(r"(^|\.)(\d+)(?=\.|$)", r"[\2]", "." + name).replace(".[", "[")


def _dispatches(model):
    """Whether some attention module of ``model`` reads the implementation from its config:
    the models that dispatch through ``AttentionInterface`` do."""
    can_set = getattr(type(model), "_can_set_attn_implementation", None)
    if can_set is not None:
        return bool(can_set())
    return bool(getattr(type(model), "_supports_attention_backend", False))


def _eager_python(function):
    """``function`` run as Python under ``torch.compile`` too: the compiled model calls it
    where its attention is, and what it records (dictionaries, copies, a mask read to the
    host) is the capture's own bookkeeping, not the model's to trace; torch then breaks the
    model's graph at each call, as reading the mask did anyway."""
    import torch

    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return function if disable is None else disable(function)


def _implementation(name):
    """The registered function behind implementation ``name``; ``None`` for eager, which each
    model defines in its own module."""
    from transformers import AttentionInterface

    if name == "eager":
        return None
    try:
        return AttentionInterface()[name]
    except KeyError:
        raise ValueError("attnviz.capture: unknown attention implementation {!r}".format(name))


def _drops_sinks(name):
    """Whether implementation ``name`` leaves a layer's sink logits out: its function takes
    neither ``s_aux`` nor ``sinks`` (transformers' ``sdpa_attention_forward``, which takes
    them into ``**kwargs`` and drops them). Eager is each model's own, which applies them."""
    import inspect

    try:
        fn = _implementation(name)
        if fn is None:
            return False
        params = inspect.signature(fn).parameters
    except (ValueError, TypeError):
        return False  # (no signature to read: nothing said)
    return "s_aux" not in params and "sinks" not in params


def _sinks_left_out(model, name):
    """Why a capture under implementation ``name`` of a model with sink logits is not the
    model's attention."""
    return ("attnviz.capture: {}'s attention has sink logits, which its {!r} attention "
            "leaves out: this run is not the model as trained (its outputs, and every layer's "
            "Q and K after the first), and the capture applies the sinks to them; load the "
            "model with attn_implementation=\"eager\" (or a kernel that takes sinks) to "
            "capture its attention".format(model, name))


def _register_mask(original, name):
    """Gives the capture's implementation ``name`` the mask format of the one it wraps, so the
    wrapped function gets exactly the mask it would have had."""
    try:
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    except ImportError:
        return
    try:
        fn = ALL_MASK_ATTENTION_FUNCTIONS[original]
    except KeyError:
        return
    AttentionMaskInterface.register(name, fn)


def _unregister(name):
    """Removes implementation ``name`` from transformers' registries of attention and mask
    functions, which have no public way to: what they hold would keep the capture alive."""
    from transformers import AttentionInterface

    interfaces = [AttentionInterface]
    try:
        from transformers.masking_utils import AttentionMaskInterface

        interfaces.append(AttentionMaskInterface)
    except ImportError:
        pass
    for interface in interfaces:
        mapping = getattr(interface, "_global_mapping", None)
        if isinstance(mapping, dict):
            mapping.pop(name, None)


def _configs(model):
    """The model's config and its sub-configs (vision-language models keep one per tower)."""
    seen, out = set(), []
    stack = [model.config]
    while stack:
        c = stack.pop()
        if id(c) in seen:
            continue
        seen.add(id(c))
        out.append(c)
        for key in getattr(c, "sub_configs", {}) or {}:
            sub = getattr(c, key, None)
            if sub is not None and hasattr(sub, "_attn_implementation"):
                stack.append(sub)
    return out


def _set_implementation(model, name):
    saved = [(c, c._attn_implementation) for c in _configs(model)]
    for c, _ in saved:
        c._attn_implementation = name
    return saved


def _restore_implementation(model, saved):
    for c, impl in saved or []:
        c._attn_implementation = impl


# The safetensors names of the dtypes a capture may hold.
_SAFETENSORS_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16",
                       "torch.float64": "F64"}


def _layer_layout(name, layers):
    """The safetensors dtype and per-layer shape every layer of ``name`` shares."""
    first = layers[0]
    dtype = _SAFETENSORS_DTYPES.get(str(first.dtype))
    if dtype is None:
        raise ValueError("{}: dtype {} is not one a capture file holds ({})".format(
            name, first.dtype, ", ".join(sorted(_SAFETENSORS_DTYPES))))
    for i, t in enumerate(layers):
        if t.shape != first.shape or t.dtype != first.dtype:
            raise ValueError("{}: layer {} is {} {}, unlike layer 0 ({} {})".format(
                name, i, t.dtype, tuple(t.shape), first.dtype, tuple(first.shape)))
    return dtype, list(first.shape)


def _le_bytes(t):
    """A tensor's elements as little-endian, C-ordered bytes, copied to the host (one layer at
    a time) where they are not there already."""
    import numpy as np
    import torch

    t = t.detach().to("cpu").contiguous()
    flat = t.reshape(-1).view(torch.uint8).numpy()
    if sys.byteorder != "little" and t.element_size() > 1:
        flat = np.ascontiguousarray(flat.reshape(-1, t.element_size())[:, ::-1])
    return memoryview(flat).cast("B")
