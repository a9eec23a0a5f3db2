"""Self-describing checkpoints and the weights manifest.

A checkpoint is one safetensors file: the tensors, plus a JSON config stored in the safetensors
metadata under the key ``"spfem"``. The config always has ``"kind"`` (which model reads it) and
``"version"`` (of that kind's format), so a file carries everything needed to rebuild its model.

Shipped checkpoints are listed in ``weights/manifest.json`` with their SHA-256::

    {"checkpoints": {"facs-v1": {"file": "facs_v1.safetensors", "sha256": "...",
                                 "url": null, "description": "..."}}}

`load_checkpoint` takes a manifest name or a path. A named file missing from the weights folder
is fetched from its ``url`` into a cache folder, and only kept once its SHA-256 matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from spfem_cli.errors import SpfemError

METADATA_KEY = "spfem"
MANIFEST_NAME = "manifest.json"
CHECKPOINT_SUFFIXES = (".safetensors", ".spfem")
_CHUNK = 1 << 20


@dataclass
class Checkpoint:
    """A loaded checkpoint: where it came from, its SHA-256 hex digest, config and tensors."""

    path: Path
    sha256: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def default_weights_dir() -> Path:
    """``$SPFEM_WEIGHTS_DIR`` if set, else the ``weights/`` folder beside the package."""
    env = os.environ.get("SPFEM_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    import spfem_cli

    return Path(spfem_cli.__file__).resolve().parents[1] / "weights"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/spfem``, else ``~/.cache/spfem``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "spfem"


def save_checkpoint(path: str | Path, *, tensors: dict[str, torch.Tensor], config: dict) -> str:
    """Write a checkpoint and return its SHA-256 hex digest.

    The file is written beside its destination and renamed into place, so an interrupted save
    never leaves a truncated checkpoint under the final name.
    """
    for key in ("kind", "version"):
        if key not in config:
            raise ValueError(f"checkpoint config needs {key!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses views and non-contiguous storage; copies are cheap at these sizes.
    clean = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    metadata = {METADATA_KEY: json.dumps(config, sort_keys=True)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(clean, tmp, metadata=metadata)
        # mkstemp files are private (0600); a shipped checkpoint should be world-readable.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return sha256_file(path)


def _read_checkpoint(path: Path, *, sha256: str | None = None) -> Checkpoint:
    """Read a checkpoint file; SpfemError when it is not a valid spfem checkpoint."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            # safe_open handles are not iterable, hence .keys().
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SpfemError(f"{path} is not a valid checkpoint file: {exc}") from exc
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        raise SpfemError(
            f"{path} is a safetensors file but not an spfem checkpoint "
            f"(no {METADATA_KEY!r} metadata)"
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpfemError(f"{path}: checkpoint config is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or "kind" not in config or "version" not in config:
        raise SpfemError(f"{path}: checkpoint config lacks 'kind' or 'version'")
    return Checkpoint(path=path, sha256=sha256 or sha256_file(path), config=config, tensors=tensors)


def _looks_like_path(name_or_path: str | Path) -> bool:
    if isinstance(name_or_path, Path):
        return True
    text = str(name_or_path)
    if os.sep in text or (os.altsep is not None and os.altsep in text):
        return True
    return text.endswith(CHECKPOINT_SUFFIXES) or Path(text).is_file()


def read_manifest(weights_dir: Path) -> dict[str, dict[str, Any]]:
    """The ``checkpoints`` table of ``weights_dir/manifest.json``; empty when there is none."""
    manifest_path = weights_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        return {}
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SpfemError(
            f"cannot read weights manifest {manifest_path}: {exc}", exit_code=3
        ) from exc
    entries = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        raise SpfemError(
            f"weights manifest {manifest_path} has no 'checkpoints' table", exit_code=3
        )
    return entries


def _download(url: str, *, dest: Path, sha256: str) -> None:
    """Fetch ``url`` to ``dest`` through a temp file; rename only when the SHA-256 matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if got != sha256:
            raise SpfemError(
                f"downloaded {dest.name} from {url} has sha256 {got}, "
                f"the manifest expects {sha256}; file discarded",
                exit_code=3,
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SpfemError(f"cannot download {dest.name} from {url}: {exc}", exit_code=3) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _resolve_named(name: str, entry: dict[str, Any], *, weights_dir: Path, cache_dir: Path) -> Path:
    """The verified local file of a manifest entry, downloading it if needed."""
    file = entry.get("file")
    expected = entry.get("sha256")
    if not file or not expected:
        raise SpfemError(f"manifest entry {name!r} needs 'file' and 'sha256'", exit_code=3)
    local = weights_dir / file
    if local.is_file():
        got = sha256_file(local)
        if got != expected:
            raise SpfemError(
                f"checkpoint file {local} has sha256 {got}, the manifest expects {expected}",
                exit_code=3,
            )
        return local
    url = entry.get("url")
    if not url:
        raise SpfemError(
            f"checkpoint {name!r}: {local} is missing and the manifest gives no "
            "url to download it from",
            exit_code=3,
        )
    cached = cache_dir / Path(file).name
    # A cached file with the wrong hash is a broken earlier download: fetch it again.
    if not (cached.is_file() and sha256_file(cached) == expected):
        _download(url, dest=cached, sha256=expected)
    return cached


def load_checkpoint(
    name_or_path: str | Path, *, weights_dir: Path | None = None, cache_dir: Path | None = None
) -> Checkpoint:
    """Load a checkpoint by manifest name (e.g. ``"facs-v1"``) or by file path.

    A `Path`, an existing file, or a string with a path separator or a ``.safetensors`` /
    ``.spfem`` suffix is read directly. Anything else is a name in the manifest of
    ``weights_dir`` (default: `default_weights_dir`), fetched into ``cache_dir`` (default:
    `default_cache_dir`) when it has a url and is not in the weights folder.
    """
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise SpfemError(f"checkpoint file not found: {path}")
        return _read_checkpoint(path)
    name = str(name_or_path)
    weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if not (weights_dir / MANIFEST_NAME).is_file():
        raise SpfemError(
            f"cannot look up checkpoint {name!r}: no weights manifest at "
            f"{weights_dir / MANIFEST_NAME} (set SPFEM_WEIGHTS_DIR or pass a checkpoint path)",
            exit_code=3,
        )
    entries = read_manifest(weights_dir)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise SpfemError(
            f"unknown checkpoint {name!r}; known checkpoints in "
            f"{weights_dir / MANIFEST_NAME}: {known}"
        )
    path = _resolve_named(name, entries[name], weights_dir=weights_dir, cache_dir=cache_dir)
    return _read_checkpoint(path, sha256=entries[name]["sha256"])


def verify_manifest(
    *, weights_dir: Path | None = None, cache_dir: Path | None = None
) -> list[tuple[str, bool, str]]:
    """Check every manifest entry without downloading: (name, ok, detail) per checkpoint.

    An entry whose file is absent but has a url counts as ok (it is fetched on first use) unless
    a cached copy is present and wrong.
    """
    weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    manifest_path = weights_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        return [("manifest", False, f"{manifest_path} not found")]
    try:
        entries = read_manifest(weights_dir)
    except SpfemError as exc:
        return [("manifest", False, str(exc))]
    results: list[tuple[str, bool, str]] = []
    for name in sorted(entries):
        entry = entries[name]
        file, expected, url = entry.get("file"), entry.get("sha256"), entry.get("url")
        if not file or not expected:
            results.append((name, False, "manifest entry needs 'file' and 'sha256'"))
            continue
        local = weights_dir / file
        cached = cache_dir / Path(file).name
        path = local if local.is_file() else cached if cached.is_file() else None
        if path is None:
            if url:
                results.append((name, True, f"not downloaded yet; will fetch from {url}"))
            else:
                results.append((name, False, f"{local} missing and no url"))
            continue
        got = sha256_file(path)
        if got != expected:
            results.append((name, False, f"{path}: sha256 {got}, manifest expects {expected}"))
            continue
        try:
            ckpt = _read_checkpoint(path, sha256=got)
        except SpfemError as exc:
            results.append((name, False, str(exc)))
            continue
        kind, version = ckpt.config["kind"], ckpt.config["version"]
        results.append((name, True, f"{path} ({kind} v{version}, sha256 {got[:12]})"))
    return results


def manifest_file_name(path: str | Path, *, weights_dir: Path | None = None) -> Path:
    """The name the manifest would list the checkpoint file ``path`` under: its path relative
    to ``weights_dir``. Raises SpfemError when it lies outside, so that a script that writes a
    checkpoint can check before it spends minutes building one."""
    weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = Path(path).resolve()
    try:
        return path.relative_to(weights_dir.resolve())
    except ValueError as exc:
        raise SpfemError(
            f"{path} is not inside the weights folder {weights_dir}: the manifest can list "
            "only checkpoints there (--no-manifest writes it without listing it)"
        ) from exc


def update_manifest(
    *,
    name: str,
    path: str | Path,
    description: str,
    weights_dir: Path | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Add or replace the manifest entry ``name`` for the checkpoint file ``path``.

    ``path`` must lie inside ``weights_dir``; the entry stores it relative to that folder.
    The file is checked to be a readable checkpoint. Returns the new entry.
    """
    weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    path = Path(path).resolve()
    rel = manifest_file_name(path, weights_dir=weights_dir)
    ckpt = _read_checkpoint(path)
    entries = read_manifest(weights_dir)
    entry = {"file": rel.as_posix(), "sha256": ckpt.sha256, "url": url, "description": description}
    entries[name] = entry
    manifest_path = weights_dir / MANIFEST_NAME
    text = json.dumps({"checkpoints": dict(sorted(entries.items()))}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=weights_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, manifest_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return entry
