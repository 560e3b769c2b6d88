"""Where FaastClassifier's fit time goes, against RidgeClassifier, in every regime of the demo.

On the demo's cached features (Fashion-MNIST, frozen EfficientNet-Lite0 @64 px, 1280-d; fill the
cache with ``faast demo`` first), single-threaded (torch and BLAS; ``--threads N`` for N), for the
demo's test episodes
(1/5/16/64 shots, 10 classes) and full data (60,000 images):

* ``FAAST fit``: ``FaastClassifier().fit`` (its default cut ``ridge=auto``, an intercept) on
  L2-normalised features, split into statistics (the design — features and the intercept's
  constant column — built in blocks and ``GramStats.add``: float64 rows kept while n < d, else
  the Gram accumulation), eigendecomposition (``GramStats.factor``: on the dual route, n < d,
  the float64 K Kᵀ and its eigendecomposition), cut selection (``Cut.apply``:
  exact leave-one-out over the ridge grid, or GCV) and weights (W from the factor);
* ``float64 K Kᵀ`` and ``float64 Cholesky`` (few-shot regimes, n < d): the floor of any fit that
  keeps the statistics in float64 and solves on the dual route — the n × n product of the design
  rows (BLAS ``dsyrk``, half the flops of the product Ridge forms, at float64 rate) and one
  Cholesky solve of K Kᵀ + ρI (on one BLAS thread up to 256 rows, as a fit makes them); a cut
  chosen from the data (the default) pays its choice on top;
* ``float64 tridiagonal`` (few-shot regimes): LAPACK's reduction of K Kᵀ to tridiagonal form
  (``dsytrd``, blocked: with its optimal workspace), the first step of every dense symmetric
  eigensolver and all that an exact GCV over a continuum of ridge levels would need besides
  O(n) work per level (K = Q T Qᵀ, so
  ‖(K + ρI)⁻¹ Y‖ and trace((K + ρI)⁻¹) follow from T + ρI and Qᵀ Y): the floor, on top of the
  K Kᵀ, of any cut chosen exactly from the spectrum — exact leave-one-out (the default) needs the
  eigenvectors as well;
* ``FAAST refine fit``: ``FaastClassifier(refine=5)`` (five margin-retargeting rounds,
  :mod:`faast.solver.retarget`, the accuracy option);
* ``FAAST ridge fit``: ``FaastClassifier(ridge=1.0)``, the same fixed penalty as ``Ridge fit``
  (its intercept penalised like the other weights, as the default's): a ridge fixed before the
  spectrum is known is solved by one Cholesky factorisation, no eigendecomposition
  (:mod:`faast.solver.direct`); the temperature of ``predict_proba`` is then found on its first
  call, not here;
* ``Ridge fit``: scikit-learn ``RidgeClassifier(alpha=1.0)`` on the same features;
* ``RidgeCV fit``: scikit-learn ``RidgeClassifierCV`` choosing α among 25 values (10^−6 … 10^3)
  by exact leave-one-out, as the default cut chooses ρ among 25 (few-shot regimes only: on full
  data scikit-learn's leave-one-out needs a 60,000 × 60,000 matrix);
* ``FAAST stream fit`` and ``FAAST ridge stream fit`` (full data, ``--stream``): the same
  data through ``partial_fit`` in batches of ``--batch`` examples (default 2,000: 30 calls), then
  ``coef_`` read, for the default cut and for ``ridge=1.0``: ``partial_fit`` only adds to the
  statistics (the temperature's bookkeeping included), the solve runs once at the end;
* ``FAAST predict`` and ``Ridge predict`` (full data, ``--predict``): ``predict`` of the 10,000 test
  images' features by the default FAAST fit and by ``RidgeClassifier(alpha=1.0)``, both fitted on
  the full data (the median of ``PREDICT_CALLS`` calls each);
* ``FAAST logistic fit`` and ``LogReg fit`` (full data, ``--logreg``): ``FaastClassifier(loss="logistic")``
  (its C chosen on a held-out tenth, no validation split) and ``LogisticRegression(C=10,
  max_iter=1000)`` (the demo's validated C), timed right after each other in every repeat.

Times are medians over ``--episodes`` episodes (few-shot) or ``--repeats`` runs (full data).

    # writes benchmarks/results/classifier_speed.{json,md}:
    python benchmarks/classifier_speed.py --episodes 10 --repeats 2 --logreg --stream
    python benchmarks/classifier_speed.py --threads 2 --out benchmarks/results/classifier_speed_2threads
    python benchmarks/classifier_speed.py --shots "" --predict --out benchmarks/results/classifier_predict
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeClassifierCV
from threadpoolctl import threadpool_limits

from faast.classifier import FaastClassifier
from faast.eval.episodes import sample_episodes
from faast.publish import write_public_json, write_public_text
from faast.solver import GramStats
from faast.solver.blas_threads import single_threaded_blas
from faast.solver.direct import _cholesky_solve
from faast.solver.spectral import _SMALL_EIGH, _outer_gram

sys.path.insert(0, str(Path(__file__).parent))
from classifier_cuts import _machine, load_features

#: ``predict`` calls per repeat of ``--predict`` (their median is the repeat's time).
PREDICT_CALLS = 5


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stages(x: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    """Seconds of each stage of one fit with the default cut, and of the whole FaastClassifier.fit."""
    classes, index = np.unique(y, return_inverse=True)
    onehot = F.one_hot(torch.as_tensor(index), len(classes)).to(x.dtype)
    out = {}
    default = FaastClassifier()  # its design: the features and the intercept's constant column
    stats = GramStats(default._design_dim(x.shape[1]), len(classes))

    def add() -> None:
        for block in default._design_blocks(x, onehot, None):
            stats.add(*block)

    out["statistics"] = _timed(add)
    out["eigendecomposition"] = _timed(stats.factor)
    factor = stats.factor()
    chosen = {}
    out["cut selection"] = _timed(lambda: chosen.setdefault("phi", FaastClassifier()._cut().apply(factor)[0]))
    out["weights"] = _timed(lambda: factor.weights(chosen["phi"]))
    if x.shape[0] < x.shape[1]:  # the dual route's floor: one float64 K Kᵀ and one Cholesky solve
        keys, values = stats._pairs.tensors()
        with single_threaded_blas() if keys.shape[0] <= _SMALL_EIGH else contextlib.nullcontext():
            out["float64 K Kᵀ"] = _timed(lambda: _outer_gram(keys))  # one BLAS thread when small, as fits do
            outer = _outer_gram(keys)
            solve = lambda: _cholesky_solve(outer, values, 1.0, lower=False, overwrite=True)  # noqa: E731
            out["float64 Cholesky"] = _timed(solve)
            scratch = _outer_gram(keys)  # a fresh K Kᵀ: the reduction overwrites it, as a solver would
            work, _ = scipy.linalg.lapack.dsytrd_lwork(scratch.shape[0])  # the blocked reduction's workspace
            reduce = lambda: scipy.linalg.lapack.dsytrd(  # noqa: E731
                scratch, lower=0, lwork=int(work), overwrite_a=1
            )
            out["float64 tridiagonal"] = _timed(reduce)
    out["FAAST fit"] = _timed(lambda: FaastClassifier().fit(x, y))
    out["FAAST ridge fit"] = _timed(lambda: FaastClassifier(ridge=1.0).fit(x, y))
    out["Ridge fit"] = _timed(lambda: RidgeClassifier(alpha=1.0).fit(x.numpy(), y))
    if x.shape[0] < x.shape[1]:
        ridge_cv = RidgeClassifierCV(alphas=np.logspace(-6, 3, 25))
        out["RidgeCV fit"] = _timed(lambda: ridge_cv.fit(x.numpy(), y))
    out["FAAST refine fit"] = _timed(lambda: FaastClassifier(refine=5).fit(x, y))
    return out


def streamed(clf: FaastClassifier, x: torch.Tensor, y: np.ndarray, batch: int) -> None:
    """``clf.partial_fit`` over consecutive batches of ``batch`` rows, then ``coef_`` read (which
    compiles the fast weights: ``partial_fit`` leaves that to first use)."""
    classes = np.unique(y)
    for start in range(0, x.shape[0], batch):
        clf.partial_fit(x[start : start + batch], y[start : start + batch], classes=classes)
    clf.coef_  # noqa: B018 - the solve, included in the time


def predict_times(x: torch.Tensor, y: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """Seconds of ``predict`` on ``queries`` (q, d) by the default FaastClassifier and by
    RidgeClassifier(alpha=1.0), both fitted on (x, y): the median of ``PREDICT_CALLS`` calls each,
    the two alternating."""
    faast = FaastClassifier().fit(x, y)
    ridge = RidgeClassifier(alpha=1.0).fit(x.numpy(), y)
    faast.predict(queries[:1]), ridge.predict(queries[:1])  # the fitted attributes made, as after a fit
    calls = [
        (_timed(lambda: faast.predict(queries)), _timed(lambda: ridge.predict(queries)))
        for _ in range(PREDICT_CALLS)
    ]
    return {
        "FAAST predict": statistics.median(f for f, _ in calls),
        "Ridge predict": statistics.median(r for _, r in calls),
    }


def full_data_run(
    x: torch.Tensor, y: np.ndarray, logreg: bool, stream: int | None, queries: np.ndarray | None = None
) -> dict[str, float]:
    """One repeat on full data: the stages; with ``stream`` (a batch size) the fits through
    ``partial_fit``; with ``logreg`` the logistic-loss fits of both libraries right after each
    other (so each repeat compares them under the same load); with ``queries`` (q, d) the
    ``predict`` times (:func:`predict_times`)."""
    out = stages(x, y)
    if queries is not None:
        out.update(predict_times(x, y, queries))
    if stream:
        out["FAAST stream fit"] = _timed(lambda: streamed(FaastClassifier(), x, y, stream))
        out["FAAST ridge stream fit"] = _timed(lambda: streamed(FaastClassifier(ridge=1.0), x, y, stream))
    if logreg:
        out["FAAST logistic fit"] = _timed(lambda: FaastClassifier(loss="logistic").fit(x, y))
        out["LogReg fit"] = _timed(lambda: LogisticRegression(C=10.0, max_iter=1000).fit(x.numpy(), y))
    return out


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    tx, ty, qx, sy = load_features(args.cache_dir, 64)
    tx = F.normalize(tx, dim=1)
    queries = F.normalize(qx, dim=1).numpy() if args.predict else None
    table: dict[str, dict[str, float]] = {}
    with threadpool_limits(args.threads):
        for k in [int(s) for s in args.shots.split(",") if s.strip()]:
            eps = sample_episodes(ty, sy, ways=None, shots=k, queries=20, episodes=args.episodes, seed=0)
            runs = [stages(tx[e.support], ty[e.support]) for e in eps]
            table[f"{k}-shot"] = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
            print(k, table[f"{k}-shot"], flush=True)
        if not args.skip_full:
            stream = args.batch if args.stream else None
            runs = [full_data_run(tx, ty, args.logreg, stream, queries) for _ in range(args.repeats)]
            table["full"] = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
            print("full", table["full"], flush=True)
    return {"table": table, "settings": {**vars(args), "machine": _machine()}}


def _threads(n: int) -> str:
    return "1 thread" if n == 1 else f"{n} threads"


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


def markdown(result: dict) -> str:
    table = result["table"]
    names = list(dict.fromkeys(n for row in table.values() for n in row))
    ratios = [("FAAST fit", "Ridge fit"), ("FAAST ridge fit", "Ridge fit"), ("FAAST fit", "RidgeCV fit")]
    if any("LogReg fit" in row for row in table.values()):
        ratios.append(("FAAST logistic fit", "LogReg fit"))
    if any("Ridge predict" in row for row in table.values()):
        ratios.append(("FAAST predict", "Ridge predict"))
    header = " | ".join(f"{a.removesuffix(' fit')} / {b.removesuffix(' fit')}" for a, b in ratios)
    lines = [f"| regime | {' | '.join(names)} | {header} |", "|---" * (len(names) + 1 + len(ratios)) + "|"]
    for regime, row in table.items():
        cells = [_fmt(row[n]) if n in row else "—" for n in names]
        cells += [f"{row[a] / row[b]:.2f}×" if a in row and b in row else "—" for a, b in ratios]
        lines.append(f"| {regime} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shots", default="1,5,16,64")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-full", action="store_true")
    p.add_argument("--logreg", action="store_true", help="also time LogisticRegression on full data")
    p.add_argument("--stream", action="store_true", help="also time partial_fit in batches on full data")
    p.add_argument("--predict", action="store_true", help="also time predict of the 10,000 test images")
    p.add_argument("--batch", type=int, default=2000, help="partial_fit batch size of --stream")
    p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--out", default="benchmarks/results/classifier_speed")
    args = p.parse_args()
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.batch < 1:
        p.error(f"--batch must be >= 1, got {args.batch}")
    result = run(args)
    md = markdown(result)
    print(md)
    out = Path(args.out)
    write_public_json(out.with_suffix(".json"), result, indent=2)
    header = (
        f"Command: `python benchmarks/classifier_speed.py {shlex.join(sys.argv[1:])}`  \n"
        "Data: Fashion-MNIST, frozen EfficientNet-Lite0 @64 px (1280-d, L2-normalised), demo episodes "
        f"(seed 0), medians; {_threads(args.threads)}  \n"
        f"Machine: {result['settings']['machine']} (shared: timings vary)\n"
    )
    write_public_text(out.with_suffix(".md"), f"{header}\n{md}\n")


if __name__ == "__main__":
    main()
