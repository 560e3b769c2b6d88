"""The temperature of ``FaastClassifier.predict_proba`` (``logit_scale="auto"``): where its rows
come from, when it is found, and how processes agree on it.

The criterion and its held-out scores are :mod:`faast.solver.temperature`; this mixin decides
which rows feed it — every kept row while the statistics keep them (n ≤ 2·D), else a sample of
at most :data:`CALIBRATION_ROWS` rows that the ``fit``/``partial_fit`` call passing them leaves
on the classifier — and finds T on first use (``logit_scale_``), not in ``fit``. It needs the
classifier's ``memory_``, ``class_count_``, ``_filter``, ``_expand``, ``_design_times``,
``_class_scores`` and ``_check_design_params``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import faast.distributed
from faast.classifier_design import evenly_spaced_rows
from faast.classifier_record import class_index, example_digests
from faast.digest_multiset import DigestMultiset
from faast.solver.temperature import fit_temperature, kept_rows_loo, restore_class_share, sampled_rows_loo

#: ``logit_scale="auto"`` beyond the kept rows: the temperature from at most this many evenly
#: spaced rows of the call that passed them, kept until it is needed (their exact leverages then
#: cost O(rows·d²); the rows 5 MB at d = 1280 in float32).
CALIBRATION_ROWS = 1024
#: The temperature ``logit_scale="auto"`` falls back to where leave-one-out says nothing (one
#: example per class; a prior), the fixed default before 2026-12.
FALLBACK_LOGIT_SCALE = 10.0


@dataclass
class _Temperature:
    """The temperature of ``predict_proba`` once found (None: not yet). A holder, so that finding
    it on first use fills it in without ``predict_proba`` changing the estimator's attributes
    (scikit-learn's ``check_dict_unchanged``): a memo of a value the fit already determines."""

    value: float | None = None


class TemperatureMixin:
    """``logit_scale_`` and the calibration steps of :class:`~faast.classifier.FaastClassifier`."""

    #: The attributes this mixin keeps on the classifier (``fit`` drops them before it starts).
    _TEMPERATURE_STATE = ("_temperature", "_calibration_rows", "_calibration_sample")

    def _settle_temperature(self, new_rows: int) -> None:
        """Find a temperature left to first use from the kept rows now, before a ``partial_fit``
        call adds ``new_rows`` rows that make the statistics drop them (crossing 2·D): a small
        batch then keeps T. A call that leaves every row kept leaves T to first use, found from
        all of them as one fit's would be (finding it at every call cost a solve per call: a
        stream of small batches paid one eigendecomposition per batch). Distributed, where the
        rows every process adds decide the crossing, it is found at every call, as before."""
        pending = getattr(self.__dict__.get("_temperature"), "value", 0.0) is None
        stats = self.memory_.stats
        if not (pending and stats.kept_row_count):
            return
        if not self.distributed and stats.count + new_rows <= stats.dual_max_pairs:
            return  # the rows stay kept
        self.logit_scale_  # noqa: B018 - computes and memoises it

    def _calibrate(self, pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None) -> None:
        """Set the temperature of ``predict_proba`` (``logit_scale_``): ``logit_scale``, or for
        ``"auto"`` the one of the held-out scores (:mod:`faast.solver.temperature`) of the kept
        rows, else of a sample of at most ``CALIBRATION_ROWS`` rows of ``pairs`` (keys (n, d),
        one-hot (n, C), weights) kept for it — found on the first use of ``logit_scale_``, so that
        a fit which never predicts probabilities does not pay for it (distributed fits: now, all
        processes together). Without rows or a sample, the temperature found before.

        The rows are chosen whatever ``logit_scale`` and ``loss`` say (a sample costs at most
        ``CALIBRATION_ROWS`` rows), so that a ``solve`` or ``forget`` after ``set_params`` of
        ``logit_scale="auto"`` or ``loss="squared"`` finds T from them, as a fit would, instead of
        keeping the fixed or logistic one."""
        kept = self._keep_calibration_rows(pairs)
        if self.loss == "logistic":  # the scores are fitted logits
            self._temperature = _Temperature(1.0)
            return
        if self.logit_scale != "auto":
            self._temperature = _Temperature(float(self.logit_scale))
            return
        if self._solve_params_["prior"] is not None or self.class_count_.max() <= 1:  # nothing to hold out
            self._temperature = _Temperature(FALLBACK_LOGIT_SCALE)
            return
        if kept:  # every kept row (the same on every process)
            self._temperature = _Temperature()
            return
        sample = self.__dict__.get("_calibration_sample")
        if sample is None or (self.distributed and pairs is None):
            # no rows: the temperature found before (distributed: solve and forget need not be
            # called by every process, so they make no collective call)
            before = getattr(self.__dict__.get("_temperature"), "value", None)
            self._temperature = _Temperature(before or FALLBACK_LOGIT_SCALE)
            return
        self._temperature = _Temperature()  # from the sample, against the current solve
        if self.distributed:  # each process holds its own sample: their sums are united, now
            self._temperature.value = self._sample_temperature(
                functools.partial(faast.distributed.current().all_reduce_, what="logit_scale")
            )

    def _forget_from_sample(self, gone: np.ndarray) -> None:
        """Take the examples ``forget`` removes — their digests ``gone`` (k,) uint64
        (:func:`~faast.classifier_record.example_digests`: features as learned, class and weight,
        bit for bit) — out of the temperature's sample, each matched to one sample row of that
        digest, so that T is found again from examples still learned: a refit's T while the
        sample held every row learned (at most ``CALIBRATION_ROWS``). Where every sample row is
        forgotten the sample stays as it was (a sample of none would leave only the fallback T).
        Distributed, each process's sample is its own and ``forget`` keeps T."""
        sample = self.__dict__.get("_calibration_sample")
        if sample is None or self.distributed:
            return
        held_keys, held_onehot, held_weights = sample
        held = example_digests(held_keys, class_index(held_onehot), held_weights)
        keep = torch.zeros(held.size, dtype=torch.bool)
        keep[torch.from_numpy(DigestMultiset(gone).missing(held))] = True  # each digest gone takes one row
        keep = keep.to(held_keys.device)
        if bool(keep.all()) or not bool(keep.any()):  # none of them, or every row: the sample stays
            return
        self._calibration_sample = (
            held_keys[keep],
            held_onehot[keep],
            None if held_weights is None else held_weights[keep],
        )
        # its size now: a later partial_fit of more rows replaces it (_calibration_rows_for)
        self._calibration_rows = int(keep.sum())

    def _keep_calibration_rows(
        self, pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None
    ) -> int:
        """Note where the temperature's rows come from: the kept rows, whose count it returns
        (the same on every process), or else, beyond them, a sample of ``pairs`` (keys (n, d),
        one-hot (n, C), weights), kept unless it would be smaller than the one before
        (:meth:`_calibration_pick`); 0 then."""
        kept = self.memory_.stats.kept_row_count  # the factor's rows (not factored here: see fit)
        if kept:
            self._calibration_sample = None
            self._calibration_rows = kept
            return kept
        pick = None if pairs is None else self._calibration_pick(pairs[0].shape[0], pairs[0].device)
        if pick is not None:
            keys, onehot, weights = pairs  # type: ignore[misc]
            self._calibration_sample: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = (
                keys[pick].detach().clone(),
                onehot[pick].clone(),
                None if weights is None else weights[pick],
            )
        return 0

    def _sample_temperature(self, reduce: Any = None) -> float:
        """The temperature of the kept sample's held-out scores under the current solve."""
        keys, onehot, weights = self._calibration_sample  # type: ignore[misc]
        factor = self.memory_.stats.factor()
        loo, onehot, weights = sampled_rows_loo(
            factor,
            self._filter(factor),
            functools.partial(self._design_times, self._expand(keys).to(torch.float64)),
            onehot,
            weights,
            self.memory_.weight(torch.float64),
        )
        class_total, held = self._class_totals(onehot, weights)
        loo, shared = restore_class_share(loo, onehot, class_total, held)
        return self._held_out_temperature(loo[shared], onehot[shared], weights[shared], reduce)

    def _class_totals(self, onehot: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For sample rows with one-hot targets (s, C) and weights (s,): the total weight W of each
        row's class among every example learned, and the weight δ held out, both (s,) float64.
        With the intercept, W comes from the statistics (the constant column's row of B is
        ``intercept_scaling`` · Σ wᵢ yᵢ: exact, after ``partial_fit``, ``forget`` and across
        processes) and δ = min(wᵢ, 1); without it, from the example counts (``class_count_``) with
        δ = 1, exact for unweighted fits (the other rows' weights are not kept)."""
        if self.fit_intercept:
            cross = self.memory_.stats.cross[-1].to(device=onehot.device, dtype=torch.float64)
            totals = cross / float(self.intercept_scaling)
            return onehot @ totals, torch.clamp(weights.to(torch.float64), max=1.0)
        counts = torch.as_tensor(self.class_count_, dtype=torch.float64, device=onehot.device)
        class_total = onehot @ counts
        return class_total, torch.ones_like(class_total)

    def _held_out_temperature(
        self, loo: torch.Tensor, onehot: torch.Tensor, weights: torch.Tensor, reduce: Any = None
    ) -> float:
        """The temperature of held-out one-hot predictions loo (n, C) with targets onehot (n, C)
        and weights (n,), through the class embeddings and similarity of the scores."""
        scores = self._class_scores(loo, None)
        return fit_temperature(scores, onehot, weights, fallback=FALLBACK_LOGIT_SCALE, reduce=reduce)

    @property
    def logit_scale_(self) -> float:
        """The temperature ``predict_proba`` applies to the scores of ``loss="squared"``
        (``logit_scale``, or the one ``"auto"`` chose); 1 with ``loss="logistic"``."""
        holder = self.__dict__.get("_temperature")
        if holder is None:
            raise AttributeError("logit_scale_ is set by fit")
        if holder.value is None:  # on first use: from the kept rows, or the kept sample
            self._check_design_params("logit_scale_")  # read through the design that built them
            if self.__dict__.get("_calibration_sample") is not None:
                holder.value = self._sample_temperature()
            else:
                factor = self.memory_.stats.factor()
                holder.value = self._held_out_temperature(*kept_rows_loo(factor, self._filter(factor)))
        return holder.value

    @logit_scale_.setter
    def logit_scale_(self, value: float) -> None:
        self._temperature = _Temperature(float(value))

    def _calibration_pick(self, rows: int, device: torch.device) -> torch.Tensor | None:
        """Which of a call's ``rows`` pairs (this process's) join the temperature's sample:
        indices (≤ CALIBRATION_ROWS,) int64 on ``device``, or None when the call's sample would
        be smaller than the one before (:meth:`_calibration_rows_for`). The sample is at most
        ``CALIBRATION_ROWS`` evenly spaced rows of the call's data (:func:`evenly_spaced_rows`);
        distributed, of all the processes' rows taken in rank order (every process's row count
        gathered), each process keeping those in its block — with the contiguous rank-ordered
        shards of :meth:`~faast.distributed.Dist.shard_range`, the rows one process would take."""
        offset, total = 0, rows
        if self.distributed:
            d = faast.distributed.current()
            counts = d.gather_rows(torch.tensor([[rows]], dtype=torch.int64), d.world_size)[:, 0].tolist()
            offset, total = sum(counts[: d.rank]), sum(counts)
        if not self._calibration_rows_for(total):
            return None
        pick = evenly_spaced_rows(total, CALIBRATION_ROWS, device)
        return pick[(pick >= offset) & (pick < offset + rows)] - offset

    def _calibration_rows_for(self, rows: int) -> bool:
        """Whether a call's ``rows`` (of every process when distributed) give the temperature a
        sample at least as large as the one it came from before (at most ``CALIBRATION_ROWS``):
        a small ``partial_fit`` batch does not replace an estimate from a large fit. Records the
        new sample's size when they do."""
        used = min(rows, CALIBRATION_ROWS)
        if used < min(getattr(self, "_calibration_rows", 0), CALIBRATION_ROWS):
            return False
        self._calibration_rows = used
        return True
