"""Checkpoints: save/load round trip, the manifest, SHA-256 checks and downloads."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from spfem_cli.errors import SpfemError
from spfem_cli.generator.checkpoint import (
    default_cache_dir,
    default_weights_dir,
    load_checkpoint,
    manifest_file_name,
    save_checkpoint,
    update_manifest,
    verify_manifest,
)

CONFIG = {"kind": "toy", "version": 3, "dims": [4, 2], "note": "round trip"}


def toy_tensors() -> dict[str, torch.Tensor]:
    return {
        "weight": torch.arange(8, dtype=torch.float32).reshape(4, 2) / 7.0,
        "index": torch.tensor([3, 1, 2], dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }


def write_manifest(weights_dir: Path, entries: dict) -> None:
    (weights_dir / "manifest.json").write_text(json.dumps({"checkpoints": entries}))


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    return folder


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "toy.safetensors"
    sha = save_checkpoint(path, tensors=toy_tensors(), config=CONFIG)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    for ref in (path, str(path)):
        ckpt = load_checkpoint(ref)
        assert ckpt.config == CONFIG
        assert ckpt.sha256 == sha
        assert ckpt.path == path
        assert set(ckpt.tensors) == set(toy_tensors())
        for name, tensor in toy_tensors().items():
            assert ckpt.tensors[name].dtype == tensor.dtype
            assert torch.equal(ckpt.tensors[name], tensor)
    assert not list(tmp_path.glob(".*.tmp")), "temp file left behind"


def test_save_needs_kind_and_version(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kind"):
        save_checkpoint(tmp_path / "a.safetensors", tensors=toy_tensors(), config={"version": 1})
    with pytest.raises(ValueError, match="version"):
        save_checkpoint(tmp_path / "a.safetensors", tensors=toy_tensors(), config={"kind": "x"})


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpfemError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(SpfemError, match="not found"):
        load_checkpoint("some/dir/model.spfem")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01 definitely not safetensors")
    with pytest.raises(SpfemError, match="not a valid checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(SpfemError, match="not an spfem checkpoint"):
        load_checkpoint(plain)
    no_kind = tmp_path / "nokind.safetensors"
    save_file({"x": torch.zeros(2)}, str(no_kind), metadata={"spfem": json.dumps({"a": 1})})
    with pytest.raises(SpfemError, match="kind"):
        load_checkpoint(no_kind)


def test_load_by_name_via_manifest(weights_dir: Path, tmp_path: Path) -> None:
    path = weights_dir / "toy.safetensors"
    sha = save_checkpoint(path, tensors=toy_tensors(), config=CONFIG)
    entry = update_manifest(name="toy-v3", path=path, description="a toy", weights_dir=weights_dir)
    assert entry == {"file": "toy.safetensors", "sha256": sha, "url": None, "description": "a toy"}
    ckpt = load_checkpoint("toy-v3", weights_dir=weights_dir, cache_dir=tmp_path / "cache")
    assert ckpt.config == CONFIG and ckpt.sha256 == sha and ckpt.path == path
    assert verify_manifest(weights_dir=weights_dir, cache_dir=tmp_path / "cache")[0][:2] == (
        "toy-v3",
        True,
    )


def test_weights_dir_from_environment(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = weights_dir / "toy.safetensors"
    save_checkpoint(path, tensors=toy_tensors(), config=CONFIG)
    update_manifest(name="toy-v3", path=path, description="a toy", weights_dir=weights_dir)
    monkeypatch.setenv("SPFEM_WEIGHTS_DIR", str(weights_dir))
    assert default_weights_dir() == weights_dir
    assert load_checkpoint("toy-v3", cache_dir=tmp_path / "cache").config == CONFIG


def test_default_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPFEM_WEIGHTS_DIR", raising=False)
    assert default_weights_dir() == Path(__file__).resolve().parents[1] / "weights"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "spfem"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "spfem"


def test_sha_mismatch_of_local_file(weights_dir: Path, tmp_path: Path) -> None:
    path = weights_dir / "toy.safetensors"
    sha = save_checkpoint(path, tensors=toy_tensors(), config=CONFIG)
    wrong = "0" * 64
    write_manifest(weights_dir, {"toy": {"file": path.name, "sha256": wrong, "url": None}})
    with pytest.raises(SpfemError) as err:
        load_checkpoint("toy", weights_dir=weights_dir, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert str(path) in message and sha in message and wrong in message
    name, ok, detail = verify_manifest(weights_dir=weights_dir, cache_dir=tmp_path / "cache")[0]
    assert (name, ok) == ("toy", False) and wrong in detail


def test_unknown_name_lists_known(weights_dir: Path, tmp_path: Path) -> None:
    write_manifest(
        weights_dir,
        {
            "alpha": {"file": "a.safetensors", "sha256": "1" * 64, "url": None},
            "beta": {"file": "b.safetensors", "sha256": "2" * 64, "url": None},
        },
    )
    with pytest.raises(SpfemError, match="unknown checkpoint 'gamma'.*alpha, beta"):
        load_checkpoint("gamma", weights_dir=weights_dir, cache_dir=tmp_path / "cache")


def test_missing_file_without_url(weights_dir: Path, tmp_path: Path) -> None:
    write_manifest(weights_dir, {"gone": {"file": "g.safetensors", "sha256": "1" * 64}})
    with pytest.raises(SpfemError, match="missing") as err:
        load_checkpoint("gone", weights_dir=weights_dir, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == 3
    assert verify_manifest(weights_dir=weights_dir, cache_dir=tmp_path / "cache")[0][1] is False


def test_download_via_file_url(weights_dir: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote" / "toy.safetensors"
    sha = save_checkpoint(remote, tensors=toy_tensors(), config=CONFIG)
    cache = tmp_path / "cache"
    write_manifest(
        weights_dir,
        {"toy": {"file": "toy.safetensors", "sha256": sha, "url": remote.as_uri()}},
    )
    name, ok, detail = verify_manifest(weights_dir=weights_dir, cache_dir=cache)[0]
    assert ok and "not downloaded" in detail
    ckpt = load_checkpoint("toy", weights_dir=weights_dir, cache_dir=cache)
    assert ckpt.path == cache / "toy.safetensors"
    assert ckpt.sha256 == sha and ckpt.config == CONFIG
    assert sorted(p.name for p in cache.iterdir()) == ["toy.safetensors"]
    # A second load uses the cached copy, even with the source gone.
    remote.unlink()
    assert load_checkpoint("toy", weights_dir=weights_dir, cache_dir=cache).sha256 == sha
    assert verify_manifest(weights_dir=weights_dir, cache_dir=cache)[0][1] is True


def test_download_with_wrong_sha_is_refused(weights_dir: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote" / "toy.safetensors"
    sha = save_checkpoint(remote, tensors=toy_tensors(), config=CONFIG)
    wrong = "f" * 64
    cache = tmp_path / "cache"
    write_manifest(
        weights_dir,
        {"toy": {"file": "toy.safetensors", "sha256": wrong, "url": remote.as_uri()}},
    )
    with pytest.raises(SpfemError) as err:
        load_checkpoint("toy", weights_dir=weights_dir, cache_dir=cache)
    assert sha in str(err.value) and wrong in str(err.value)
    assert not cache.exists() or not any(cache.iterdir()), "refused download left a file"


def test_download_failure_is_clean(weights_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    missing = (tmp_path / "remote" / "nothing.safetensors").as_uri()
    write_manifest(
        weights_dir, {"toy": {"file": "t.safetensors", "sha256": "1" * 64, "url": missing}}
    )
    with pytest.raises(SpfemError, match="cannot download"):
        load_checkpoint("toy", weights_dir=weights_dir, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())


def test_update_manifest_refuses_outside_file(weights_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.safetensors"
    save_checkpoint(outside, tensors=toy_tensors(), config=CONFIG)
    with pytest.raises(SpfemError, match="not inside"):
        update_manifest(name="x", path=outside, description="", weights_dir=weights_dir)


@pytest.mark.parametrize(
    "script", ["build_shading.py", "build_facs_weights.py", "calibrate_expressions.py"]
)
def test_a_build_script_refuses_an_output_the_manifest_cannot_list_before_building(
    tmp_path: Path, script: str
) -> None:
    """Each script that writes a shipped checkpoint checks where it writes before it spends
    minutes on the clips: outside the weights folder the manifest cannot list it."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "elsewhere.safetensors"
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / script), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 2
    assert "not inside the weights folder" in done.stderr and "--no-manifest" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_manifest_file_name(weights_dir: Path, tmp_path: Path) -> None:
    inside = weights_dir / "sub" / "a.safetensors"
    assert manifest_file_name(inside, weights_dir=weights_dir) == Path("sub/a.safetensors")
    with pytest.raises(SpfemError, match="--no-manifest"):
        manifest_file_name(tmp_path / "a.safetensors", weights_dir=weights_dir)


def test_update_manifest_keeps_other_entries(weights_dir: Path) -> None:
    a = weights_dir / "a.safetensors"
    b = weights_dir / "sub" / "b.safetensors"
    save_checkpoint(a, tensors=toy_tensors(), config=CONFIG)
    save_checkpoint(b, tensors=toy_tensors(), config={**CONFIG, "version": 4})
    update_manifest(name="a", path=a, description="first", weights_dir=weights_dir)
    update_manifest(name="b", path=b, description="second", weights_dir=weights_dir, url="x://y")
    data = json.loads((weights_dir / "manifest.json").read_text())
    assert sorted(data["checkpoints"]) == ["a", "b"]
    assert data["checkpoints"]["b"]["file"] == "sub/b.safetensors"
    assert data["checkpoints"]["b"]["url"] == "x://y"
    assert [r[1] for r in verify_manifest(weights_dir=weights_dir)] == [True, True]


def test_name_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(SpfemError, match="no weights manifest") as err:
        load_checkpoint("facs-v1", weights_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert err.value.exit_code == 3


def test_verify_without_manifest(tmp_path: Path) -> None:
    name, ok, detail = verify_manifest(weights_dir=tmp_path)[0]
    assert (name, ok) == ("manifest", False) and "not found" in detail
