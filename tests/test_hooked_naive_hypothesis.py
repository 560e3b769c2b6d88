"""The hooked FaastModel against the plain reference (:mod:`faast.lm.naive`) and the prefix caches
against running every row whole, on random shapes drawn by hypothesis.

``tests/test_lm_naive.py`` compares fixed batches; here hypothesis draws the family, the layout
(which blocks carry middle memories, which output read-out), the cut, how many batches are learned,
their rows' lengths, padding side and pair masks, and a padded query batch. Three properties:

* the logits the hooked model returns equal ``naive.logits`` (explicit loops, SVD pseudoinverse),
  and each memory's statistics (G, B, n, learned-token counts) and compiled fast weights equal
  those of the reference's explicit pairs;
* ``FaastModel.head_inputs`` / ``capture`` after a :class:`~faast.lm.prefix_cache.PrefixCache`
  equal running prefix and row whole (states, logits read through the learned memory, and the
  statistics learned), the cache reused across calls;
* ``TaskModel.label_scores`` through its KV caches (lead demonstrations, a shared prompt) equal
  whole sequences.

Every model is a tiny float64 model built from a config (no download), so the tolerances are a few
thousand float64 ulps of the compared values (1e-9 relative), far below any real difference.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.lm import FaastConfig, ReadConfig, get_faast_model, naive
from tests.lm_tiny import FAMILIES, VOCAB, tiny_model
from tests.test_lm_model import with_random_readout

#: read-out → (output_mix, explicit knobs shared by the model and the reference)
READS = {
    "prob-gated": ("prob", {"weight": 0.7, "temperature": 0.3, "gate": 0.6, "support": "learned"}),
    "prob": ("prob", {"weight": 0.3, "temperature": 0.5, "gate": None, "support": "learned"}),
    "prob-vocab": ("prob", {"weight": 0.2, "temperature": 1.0, "gate": None, "support": "vocab"}),
    "logit": ("logit", {"weight": 0.8}),
    "paper": ("paper", {"weight": 0.6}),
    "correction": ("correction", {"weight": 0.7, "damping": 0.2}),
    "none": (None, {}),
}


def _settings(examples: int) -> settings:
    """Derandomised (the same examples in every run, CI included), no deadline, no database."""
    return settings(derandomize=True, deadline=None, database=None, max_examples=examples)


def _modules(model, family: str):
    if family == "gpt2":
        return model.transformer.h, model.transformer.ln_f
    return model.model.layers, model.model.norm


def _batch(rng: np.random.Generator, lengths: list[int], side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of random rows of ``lengths``, padded on ``side`` with token 0."""
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        cols = slice(0, n) if side == "right" else slice(width - n, width)
        ids[i, cols] = torch.from_numpy(rng.integers(3, VOCAB, n))
        mask[i, cols] = 1
    return ids, mask


def _pair_mask(rng: np.random.Generator, mask: torch.Tensor) -> torch.Tensor | None:
    """A random (B, T−1) pair mask keeping at least one pair of real tokens, or None."""
    real = (mask[:, :-1] * mask[:, 1:]).bool()
    pm = torch.from_numpy(rng.random(real.shape) < 0.5)
    if not bool((pm & real).any()):
        b, t = map(int, torch.nonzero(real)[0])
        pm[b, t] = True
    return pm


def _close(got: torch.Tensor, expected: torch.Tensor, what: str, rel: float = 1e-9) -> None:
    """Equal within ``rel`` of the expected values' largest magnitude (float64 throughout)."""
    got, expected = got.detach(), expected.detach()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(
        got, expected, rtol=0, atol=rel * max(scale, 1.0), msg=lambda m: f"{what}: {m}"
    )


# ------------------------------------------------------------------------ hooked model vs reference
def _reference_pairs(model, spec, learn, masks, *, final_norm, blocks):
    """The reference's explicit pairs, as ``naive.logits`` forms them: middle layer → (K, V) with
    the scorer applied, and "output" → (K, V, next ids) of the output memory."""
    head = model.get_output_embeddings().weight
    bias = getattr(model.get_output_embeddings(), "bias", None)
    embed = model.get_input_embeddings().weight
    mids: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {m.layer: [] for m in spec.middles}
    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for (ids, mask), pm in zip(learn, masks, strict=True):
        hs, pre = naive.run(model, ids, mask, final_norm, blocks)
        for m in spec.middles:
            k, v, _ = naive.pairs(hs[m.layer], mask, pm)
            if m.scorer is not None:
                v = v * torch.sigmoid(torch.cat([k, v], dim=-1) @ m.scorer[0])[:, None]
            mids[m.layer].append((k, v))
        if spec.mix is not None:
            k, _, where = naive.pairs(pre if spec.mix == "paper" else hs[-1], mask, pm)
            nxt = torch.tensor([int(ids[b, t]) for b, t in where])
            if spec.mix == "correction":
                p = torch.softmax(k @ head.T + (0 if bias is None else bias), dim=-1)
                v = head[nxt] - p @ head
            else:
                v = (embed if spec.mix == "paper" else head)[nxt]
            out.append((k, v, nxt))
    pairs = {m: (torch.cat([k for k, _ in kv]), torch.cat([v for _, v in kv])) for m, kv in mids.items()}
    if out:
        pairs["output"] = tuple(torch.cat(parts) for parts in zip(*out, strict=True))
    return pairs


@_settings(150)
@given(
    family=st.sampled_from(FAMILIES),
    read=st.sampled_from(sorted(READS)),
    layers=st.integers(2, 3),
    middles=st.sets(st.integers(0, 2), max_size=2),
    batches=st.lists(
        st.tuples(st.lists(st.integers(2, 9), min_size=1, max_size=3), st.sampled_from(["left", "right"])),
        min_size=1,
        max_size=3,
    ),
    masked=st.booleans(),
    query=st.tuples(st.lists(st.integers(1, 9), min_size=1, max_size=3), st.sampled_from(["left", "right"])),
    alpha=st.floats(0.5, 1.5),
    c=st.floats(0.5, 2.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_hooked_model_equals_the_naive_reference(
    family, read, layers, middles, batches, masked, query, alpha, c, seed
):
    """Logits of a padded query (position ids counting real tokens, as generate passes them), every
    memory's statistics, learned-token counts and compiled fast weights equal the reference's after
    learning 1-3 padded batches (optionally through random pair masks)."""
    middles = sorted(m for m in middles if m < layers)
    mix, knobs = READS[read]
    if mix is None and not middles:
        middles = [0]  # something must be attached
    rng = np.random.default_rng(seed)
    model = tiny_model(family, layers=layers, seed=seed % 1000)
    layout = FaastConfig(memory_layers=middles, output_memory=mix is not None, output_mix=mix or "prob")
    cut = f"alpha={alpha!r},c={c!r}"
    fm = with_random_readout(get_faast_model(model, layout, ReadConfig(cut=cut, **knobs)), seed=seed % 997)
    learn = [_batch(rng, lengths, side) for lengths, side in batches]
    masks = [_pair_mask(rng, mask) if masked else None for _, mask in learn]
    total = 0
    for (ids, mask), pm in zip(learn, masks, strict=True):
        total += fm.learn(input_ids=ids, attention_mask=mask, pair_mask=pm)
    q_ids, q_mask = _batch(rng, *query)
    positions = naive.positions(q_mask)
    with torch.no_grad():
        got = fm(input_ids=q_ids, attention_mask=q_mask, position_ids=positions).logits
    fm.compile_fast_weights()
    memories = dict(fm.memories.items())
    spec = naive.NaiveSpec(
        mix=mix,
        **knobs,
        alpha=alpha,
        c=c,
        middles=[
            naive.NaiveMiddle(m.layer, m.out_proj.weight.detach(), m.scorer.weight.detach())
            for m in fm.middle_memories
        ],
    )
    learned = {m.layer: m for m in fm.middle_memories}
    output = fm.output_memory
    fm.unload()  # the reference runs the plain model
    blocks, norm = _modules(model, family)
    expected = naive.logits(
        model, spec, learn, (q_ids, q_mask), final_norm=norm, blocks=blocks, pair_masks=masks
    )
    real = q_mask.bool()
    finite = torch.isfinite(expected[real])
    assert torch.equal(finite, torch.isfinite(got[real]))
    _close(got[real][finite], expected[real][finite], "logits at real tokens", rel=1e-8)

    pairs = _reference_pairs(model, spec, learn, masks, final_norm=norm, blocks=blocks)
    readouts = [(learned[layer], f"middle {layer}") for layer in sorted(learned)]
    readouts += [(output, "output")] if output is not None else []
    assert len(memories) == len(readouts)
    for readout, name in readouts:
        k, v, *nxt = pairs[readout.layer if name != "output" else "output"]
        stats = readout.stats
        assert stats.count == k.shape[0] == total, name
        _close(stats.gram, k.T @ k, f"{name} G")
        _close(stats.cross, k.T @ v, f"{name} B")
        w = naive.fast_weight(k, v, alpha, c)  # SVD pseudoinverse, τ = c·n^-α
        _close(readout.memory.weight(torch.float64), w, f"{name} W", rel=1e-8)
        if nxt:
            counts = torch.bincount(nxt[0], minlength=VOCAB)
            assert torch.equal(readout.extra_state()["counts"], counts), name


# ------------------------------------------------------------------------ the prefix cache
@_settings(100)
@given(
    family=st.sampled_from(FAMILIES),
    mix=st.sampled_from(["prob", "logit", "correction"]),
    prefix_len=st.integers(1, 9),
    rows=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    learned=st.lists(st.integers(2, 8), min_size=1, max_size=3),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_prefix_cache_gives_the_states_logits_and_statistics_of_whole_rows(
    family, mix, prefix_len, rows, learned, seed
):
    """head_inputs after a prefix cache (right-padded continuations of random lengths) equal the
    states of prefix + row run whole; the learned model's logits there equal its full forward;
    capture(prefix=...) learns exactly the pairs of whole rows whose next token is past the prefix;
    and the cache, used twice, gives the same states the second time."""
    rng = np.random.default_rng(seed)
    model = tiny_model(family, seed=seed % 1000)
    read = ReadConfig(cut="alpha=0.9,c=1.5", weight=0.5, gate=None)
    fm = get_faast_model(model, FaastConfig(num_memories=0, output_mix=mix), read)
    fm.learn(*_batch(rng, learned, "right"))
    prefix = rng.integers(3, VOCAB, prefix_len).tolist()
    cache = fm.prefix_cache(prefix)
    ids, mask = _batch(rng, rows, "right")
    states = fm.head_inputs(ids, mask, prefix=cache)
    again = fm.head_inputs(ids, mask, prefix=cache)
    assert torch.equal(states, again)  # the cache is copied, never extended in place
    scored = fm.output_logits({"head_input": states})
    whole_rows = []
    for b, n in enumerate(rows):
        whole = torch.tensor([prefix + ids[b, :n].tolist()])
        whole_rows.append(whole)
        alone = fm.head_inputs(whole)[0, prefix_len:]
        _close(states[b, :n], alone, f"row {b} states")
        with torch.no_grad():
            full = fm(input_ids=whole).logits[0, prefix_len:]
        _close(scored[b, :n], full, f"row {b} logits", rel=1e-8)

    if max(rows) < 2:
        return  # no pair to learn after the prefix (capture refuses rows without one)
    # learning after the cache = learning whole rows, only the pairs whose next token is a row's
    before = fm.output_memory.stats.copy()
    fm.learn_captured(fm.capture(ids, mask, prefix=cache))
    after_cache = fm.output_memory.stats.copy()
    fm.output_memory.stats.restore(before)
    width = prefix_len + max(rows)
    full_ids = torch.zeros(len(rows), width, dtype=torch.long)
    full_mask = torch.zeros_like(full_ids)
    for b, whole in enumerate(whole_rows):
        full_ids[b, : whole.shape[1]], full_mask[b, : whole.shape[1]] = whole[0], 1
    pm = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    pm[:, prefix_len:] = True  # pair t → t+1 with t ≥ prefix_len: both tokens in the row
    fm.learn(input_ids=full_ids, attention_mask=full_mask, pair_mask=pm)
    assert after_cache.count == fm.output_memory.stats.count == before.count + sum(n - 1 for n in rows)
    _close(after_cache.gram, fm.output_memory.stats.gram, "G after the cache")
    _close(after_cache.cross, fm.output_memory.stats.cross, "B after the cache")


# ------------------------------------------------------------------------ task scoring
@_settings(60)
@given(
    family=st.sampled_from(["llama", "qwen2", "gpt2"]),
    demos=st.lists(
        st.tuples(st.lists(st.integers(3, 30), min_size=1, max_size=3), st.integers(0, 3)), max_size=3
    ),
    labels=st.lists(
        st.lists(st.integers(40, 46), min_size=1, max_size=3), min_size=2, max_size=4, unique_by=tuple
    ),
    inputs=st.lists(st.lists(st.integers(3, 30), min_size=1, max_size=4), min_size=1, max_size=3),
    learned=st.integers(1, 6),
    mix=st.sampled_from(["prob", "logit"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_task_label_scores_through_kv_caches_equal_whole_sequences(
    family, demos, labels, inputs, learned, mix, seed
):
    """label_scores one input a batch (the prompt once, the labels after its cache) with the lead
    demonstrations read from their cache equal every sequence run whole, demonstrations included."""
    from faast.lm.examples import Example
    from faast.lm.prompts import PromptTemplate
    from faast.lm.task import ReadCandidate, TaskModel
    from faast.lm.task_spec import TaskSpec
    from tests.lm_wordlevel import word_tokenizer

    words = [" ".join(f"w{t}" for t in label) for label in labels]
    template = PromptTemplate("{input} w90", answer_prefix=" ", answer_end=" w91", separator=" w92")
    text = [" ".join(f"w{t}" for t in x) for x in inputs]
    spec = TaskSpec(template, "answer", words, [(" ".join(f"w{t}" for t in x), words[y % len(words)])
                                                for x, y in demos])  # fmt: skip
    rng = np.random.default_rng(seed)
    task = TaskModel.create(tiny_model(family, seed=seed % 1000), word_tokenizer(bos=True), spec)
    examples = [
        Example(
            " ".join(f"w{t}" for t in rng.integers(3, 30, 1 + i % 3)), words[int(rng.integers(len(words)))]
        )
        for i in range(learned)
    ]
    task.learn(examples, progress=False)
    task.use(ReadCandidate(mix, ReadConfig(weight=0.5, gate=None)))
    cached = task.label_scores(text, batch_size=1)
    task.lead_cache = False  # every sequence whole, lead demonstrations included
    task._lead = None
    whole = task.label_scores(text, batch_size=64)
    assert cached.shape == (len(text), len(words))
    _close(cached, whole, "label scores", rel=1e-9)
