"""The vectorised digests that ``forget`` checks against plain per-row references.

``faast.lm.learned_rows.row_digests`` (a language model's record of learned rows) and
``faast.classifier_record.example_digests`` (the classifier's record of examples) hash a whole
batch at once (uint64 dot products with fixed odd multipliers, then splitmix64's finaliser). A
saved record holds these digests, so each must be the digest of its row alone, whatever the batch
around it: its width, padding side, a prefix cache, the keys' memory layout. This file guards:

* each row's digest equals a plain Python-integer hash of that row (fixed seeds and formula:
  saved records stay valid) and the digest of the row in a batch of its own;
* ``row_digests``: neither padding (left, right, extra width) nor running the prefix from a cache
  changes a row's digest; rows that learn no pair get none;
* ``example_digests``: float16/bfloat16/float32/float64 keys, transposed, sliced, strided and
  expanded (stride-0) layouts, weights None = weights 1;
* ``digest_multiset.multipliers(count, seed)`` is a prefix of ``multipliers(larger, seed)`` (the
  property that makes batches of different widths agree).
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.classifier_record import example_digests
from faast.digest_multiset import multipliers
from faast.lm.learned_rows import row_digests
from faast.lm.readouts import Captured

M64 = 2**64
#: The seeds of the multipliers (tokens, flags, length) of ``row_digests`` and of
#: ``example_digests``, written out: changing them would invalidate every saved record.
ROW_SEEDS = (0x70_4E5, 0x9A_1125, 0x1E_6745)
EXAMPLE_SEED = 0x5EED_FAA5
LONGEST = 64  # more multipliers than any row here needs


def _mix(h: int) -> int:
    """splitmix64's finaliser on a Python integer in [0, 2⁶⁴)."""
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) % M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) % M64
    return h ^ (h >> 31)


def _dot(words: list[int], seed: int) -> int:
    """Σ wordsⱼ · multiplierⱼ mod 2⁶⁴, the multipliers the first of one long sequence."""
    table = [int(x) for x in multipliers(LONGEST, seed)]
    return sum(w * m for w, m in zip(words, table, strict=False)) % M64


# --------------------------------------------------------------------------------- row_digests
def _row_reference(tokens: list[int], learned: list[bool], prefix: tuple[int, ...]) -> int:
    """The digest of one row: its sequence (prefix, then its real tokens), a flag per pair of that
    sequence (1 where the pair is learned; the prefix's pairs and the one into the row never
    are) and its length, hashed linearly, then mixed."""
    sequence = list(prefix) + tokens
    flags = [0] * len(prefix) + [int(f) for f in learned]
    length_multiplier = int(multipliers(LONGEST, ROW_SEEDS[2])[0])
    h = _dot(sequence, ROW_SEEDS[0]) + _dot(flags, ROW_SEEDS[1]) + len(sequence) * length_multiplier
    return _mix(h % M64)


Row = tuple[list[int], list[bool], int, int]

rows_strategy = st.lists(
    st.integers(0, 9).flatmap(
        lambda length: st.tuples(
            st.lists(st.integers(0, 2**31 - 1), min_size=length, max_size=length),  # real tokens
            st.lists(st.booleans(), min_size=max(length - 1, 0), max_size=max(length - 1, 0)),  # learned
            st.integers(0, 4),  # left padding
            st.integers(0, 4),  # right padding
        )
    ),
    min_size=1,
    max_size=5,
)


def _batch(rows: list[Row], prefix: tuple[int, ...], pad_id: int, extra_width: int = 0) -> Captured:
    """The rows (tokens, learned flags, left and right padding) as one padded batch: input_ids and
    attention_mask (B, W), valid (B, W − 1) — W the widest row plus ``extra_width`` (at least 2),
    each row's tokens after its left padding (moved left where W is short of both paddings)."""
    width = max(2, max(len(t) + left + right for t, _, left, right in rows) + extra_width)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    mask = torch.zeros(len(rows), width, dtype=torch.int64)
    valid = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    for b, (tokens, learned, left, _) in enumerate(rows):
        start = min(left, width - len(tokens))
        ids[b, start : start + len(tokens)] = torch.tensor(tokens, dtype=torch.int64)
        mask[b, start : start + len(tokens)] = 1
        valid[b, start : start + len(learned)] = torch.tensor(learned, dtype=torch.bool)
    return Captured(ids, mask, valid, int(valid.sum()), prefix_ids=prefix)


@settings(max_examples=300, deadline=None)
@given(
    rows=rows_strategy,
    prefix=st.lists(st.integers(0, 2**31 - 1), max_size=3).map(tuple),
    pad_id=st.integers(0, 2**31 - 1),
    extra_width=st.integers(0, 3),
)
def test_row_digests_equal_a_plain_hash_of_each_row(rows, prefix, pad_id, extra_width):
    """``row_digests`` of a padded batch (B, W) gives, for each row that learns a pair and in row
    order, the plain hash of its prefix, real tokens, learned flags and length."""
    digests, index = row_digests(_batch(rows, prefix, pad_id, extra_width))
    learning = [b for b, (_, learned, _, _) in enumerate(rows) if any(learned)]
    assert index.dtype == np.int64 and index.tolist() == learning
    assert digests.dtype == np.uint64
    expected = [_row_reference(rows[b][0], rows[b][1], prefix) for b in learning]
    assert [int(x) for x in digests] == expected


@settings(max_examples=200, deadline=None)
@given(
    rows=rows_strategy,
    prefix=st.lists(st.integers(0, 2**31 - 1), max_size=3).map(tuple),
    pad_ids=st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    extra_width=st.integers(0, 3),
)
def test_a_rows_digest_is_that_of_the_row_alone_whatever_its_padding_or_prefix_cache(
    rows, prefix, pad_ids, extra_width
):
    """Each row's digest in a batch equals the digest of the row in a batch of its own: unpadded,
    padded on the other side with another pad id, or with its prefix as ordinary (unlearned)
    tokens at its front instead of a prefix cache."""
    digests, index = row_digests(_batch(rows, prefix, pad_ids[0], extra_width))
    for got, b in zip(digests.tolist(), index.tolist(), strict=True):
        tokens, learned, left, right = rows[b]
        alone = row_digests(_batch([(tokens, learned, 0, 0)], prefix, pad_ids[1]))[0]
        flipped = row_digests(_batch([(tokens, learned, right, left + 1)], prefix, pad_ids[1], 1))[0]
        whole = (list(prefix) + tokens, [False] * len(prefix) + learned, left, right)
        no_cache = row_digests(_batch([whole], (), pad_ids[0]))[0]
        assert [int(alone[0]), int(flipped[0]), int(no_cache[0])] == [got] * 3


# ----------------------------------------------------------------------------- example_digests
def _example_reference(row_bytes: bytes, label: int, weight: float) -> int:
    """The digest of one example: its key's bytes (zero-padded to 8-byte little-endian words),
    then its class + 1, its weight's float64 bits and its word count, hashed linearly, mixed."""
    raw = row_bytes + b"\0" * ((-len(row_bytes)) % 8)
    words = [int.from_bytes(raw[i : i + 8], "little") for i in range(0, len(raw), 8)]
    bits = int(np.array([weight], dtype=np.float64).view(np.uint64)[0])
    return _mix(_dot([*words, label + 1, bits, len(words)], EXAMPLE_SEED))


def _layout(keys: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values (n, d) in another memory layout: a transpose's view, a slice of wider rows,
    every other column, a row slice at a storage offset, or (for "expanded") a stride-0 column
    repeated — the values then change: every column equals the first."""
    n, d = keys.shape
    if layout == "transposed":
        return keys.T.contiguous().T
    if layout == "wider rows":
        wide = torch.zeros(n, d + 3, dtype=keys.dtype)
        wide[:, 1 : d + 1] = keys
        return wide[:, 1 : d + 1]
    if layout == "every other column":
        wide = torch.zeros(n, 2 * d, dtype=keys.dtype)
        wide[:, ::2] = keys
        return wide[:, ::2]
    if layout == "storage offset":
        tall = torch.zeros(n + 2, d, dtype=keys.dtype)
        tall[2:] = keys
        return tall[2:]
    if layout == "expanded":
        return keys[:, :1].expand(n, d)
    return keys


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 13),
    dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
    layout=st.sampled_from(
        ["contiguous", "transposed", "wider rows", "every other column", "storage offset", "expanded"]
    ),
    weighted=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_example_digests_equal_a_plain_hash_of_each_row_in_any_layout(n, d, dtype, layout, weighted, seed):
    """``example_digests`` of keys (n, d) in any float dtype and memory layout, classes (n,) and
    weights (n,) or None equals, row by row, the plain hash of the row's bytes, class and weight
    and the digest of that example alone; weights None are weights 1."""
    gen = torch.Generator().manual_seed(seed)
    keys = _layout(torch.randn(n, d, generator=gen).to(dtype), layout)
    classes = torch.randint(0, 7, (n,), generator=gen)
    weights = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1 if weighted else None
    got = example_digests(keys, classes, weights)
    assert got.dtype == np.uint64 and got.shape == (n,)
    for i in range(n):
        dense = torch.empty(d, dtype=dtype).copy_(keys[i])  # a size-1 slice may keep its stride
        row_bytes = dense.view(torch.uint8).numpy().tobytes()
        weight = 1.0 if weights is None else float(weights[i])
        assert int(got[i]) == _example_reference(row_bytes, int(classes[i]), weight), i
        alone = example_digests(
            keys[i : i + 1], classes[i : i + 1], None if weights is None else weights[i : i + 1]
        )
        assert int(alone[0]) == int(got[i])
    ones = example_digests(keys.contiguous(), classes, torch.ones(n, dtype=torch.float64))
    if weights is None:
        np.testing.assert_array_equal(ones, got)


# ------------------------------------------------------------------------------------ multipliers
@settings(max_examples=200, deadline=None)
@given(
    counts=st.tuples(st.integers(0, 300), st.integers(0, 300)).map(sorted),
    seed=st.one_of(st.sampled_from([*ROW_SEEDS, EXAMPLE_SEED]), st.integers(0, 2**63 - 1)),
)
def test_multipliers_are_prefixes_of_one_odd_sequence(counts, seed):
    """``multipliers(k, seed)`` is the first k of ``multipliers(K, seed)`` for k ≤ K (digests of
    rows in batches of other widths depend on it), all odd uint64, read-only."""
    short, long = multipliers(counts[0], seed), multipliers(counts[1], seed)
    assert short.dtype == long.dtype == np.uint64 and long.shape == (counts[1],)
    np.testing.assert_array_equal(short, long[: counts[0]])
    assert bool(np.all(long & np.uint64(1) == 1))
    assert not long.flags.writeable
