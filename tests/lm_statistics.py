"""Helpers comparing the float64 statistics of a FaastModel's memories (shared by the LM tests)."""

from __future__ import annotations

from tests.lm_tiny import random_batch


def stats_of(fm):
    return {n: (m.stats.gram.clone(), m.stats.cross.clone(), m.stats.count) for n, m in fm.memories.items()}


def assert_stats_close(a, b, rtol=1e-10):
    assert a.keys() == b.keys()
    for name in a:
        ga, ca, na = a[name]
        gb, cb, nb = b[name]
        assert na == nb, name
        scale = max(float(ga.abs().max()), 1e-300)
        assert float((ga - gb).abs().max()) <= rtol * scale, name
        scale = max(float(ca.abs().max()), 1e-300)
        assert float((ca - cb).abs().max()) <= rtol * scale, name


def assert_padding_learns_each_sequence(fm, lengths, rtol):
    """A right-padded batch of random sequences of ``lengths``, the same batch padded on the left,
    and each sequence learned alone without padding give the same statistics (up to ``rtol``)."""
    right = random_batch(lengths, side="right")
    left = random_batch(lengths, side="left")
    fm.learn(input_ids=right[0], attention_mask=right[1])
    s_right = stats_of(fm)
    fm.reset_projection().learn(input_ids=left[0], attention_mask=left[1])
    assert_stats_close(stats_of(fm), s_right, rtol=rtol)
    fm.reset_projection()
    for i, n in enumerate(lengths):
        fm.learn(input_ids=right[0][i : i + 1, :n])
    assert_stats_close(stats_of(fm), s_right, rtol=rtol)
