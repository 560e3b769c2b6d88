"""DigestMultiset (the records of examples and rows learned) against a plain Counter, through
random interleavings of additions (merged lazily), queries, removals, copies and differences."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from faast.digest_multiset import DigestMultiset

_DIGEST = st.sampled_from([0, 1, 7, 2**63, 2**64 - 1])  # few values: repeats are common
_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "missing", "copy", "minus"]), st.lists(_DIGEST, max_size=6)),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(start=st.lists(_DIGEST, max_size=8), ops=_OPS)
def test_the_multiset_follows_a_counter(start, ops):
    record, reference = DigestMultiset(np.array(start, dtype=np.uint64)), Counter(start)
    snapshots: list[tuple[DigestMultiset, Counter]] = []
    for op, values in ops:
        if op == "add":
            record.add(values)
            reference.update(values)
        elif op in ("missing", "remove"):
            left, expected = Counter(reference), []
            for i, v in enumerate(values):
                if left[v] > 0:
                    left[v] -= 1
                else:
                    expected.append(i)
            if op == "missing":
                assert record.missing(values).tolist() == expected
            else:
                assert record.remove_found(values) == (not expected)
                reference.subtract(v for i, v in enumerate(values) if i not in expected)
                reference = +reference
        elif op == "copy":
            snapshots.append((record.copy(), Counter(reference)))
        elif snapshots:  # minus an earlier copy
            earlier, earlier_reference = snapshots[-1]
            assert record.minus(earlier).tolist() == sorted((reference - earlier_reference).elements())
        assert len(record) == sum(reference.values())
    assert record.digests.tolist() == sorted(reference.elements())
    for copy, expected in snapshots:  # copies are independent of what came after them
        assert copy.digests.tolist() == sorted(expected.elements())
    assert DigestMultiset.from_tensor(record.to_tensor(), "t").digests.tolist() == record.digests.tolist()
