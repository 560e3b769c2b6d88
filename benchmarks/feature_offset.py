"""How far features sit from the origin for their spread: ‖mean‖² / Σ variances, the ratio above
which ``FaastClassifier.fit`` warns (``faast.classifier.FAR_FROM_ORIGIN``), on the data sets the
defaults were checked on: scikit-learn's raw breast_cancer, digits, wine and iris tables and the
demo's Fashion-MNIST EfficientNet-Lite0 features @64 px, as encoded and L2-normalised (from the
feature cache; encoded into it first when empty, minutes on a CPU).

    python benchmarks/feature_offset.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine

from faast.classifier import FAR_FROM_ORIGIN


def offset_ratio(x: np.ndarray) -> float:
    """‖mean‖² over the summed variances of the columns of x (n, d), in float64."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.square(x.mean(axis=0)).sum() / x.var(axis=0).sum())


def main() -> None:
    rows = [
        (f.__name__.removeprefix("load_"), offset_ratio(f().data))
        for f in (load_breast_cancer, load_digits, load_wine, load_iris)
    ]
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from classifier_cuts import load_features

        x = load_features(None, 64)[0]
        rows += [
            ("fashion-mnist features", offset_ratio(x.numpy())),
            ("fashion-mnist features, L2", offset_ratio(F.normalize(x, dim=1).numpy())),
        ]
    except (FileNotFoundError, OSError) as exc:
        print(f"(no Fashion-MNIST features: {exc})")
    print(f"| data | ‖mean‖² / Σ variances (warning above {FAR_FROM_ORIGIN:g}) |\n|---|---|")
    for name, ratio in rows:
        print(f"| {name} | {ratio:.3g} |")


if __name__ == "__main__":
    main()
