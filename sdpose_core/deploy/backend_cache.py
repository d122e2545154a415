"""Where the automatic backend choice keeps its exported graphs and decisions: a per-user cache folder.

    cache_root()                 # $SDPOSE_CACHE_DIR, else $XDG_CACHE_HOME/sdpose, else ~/.cache/sdpose
    weights_hash(model)          # sha256 of the config and every parameter / buffer
    selection_key(model, ...)    # folder name: weights + candidates + runtime versions + CPU + code

Nothing is ever written into the package or the repository: a cache folder inside either is refused
with an error naming it (set SDPOSE_CACHE_DIR elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

DEPLOY_DIR = Path(__file__).resolve().parent
# the code whose changes make cached graphs / decisions stale
CODE_FILES = ("export.py", "onnx_runtime.py", "quantize.py", "cpu_speedups.py", "auto_backend.py", "backend_cache.py")


def weights_hash(model: nn.Module) -> str:
    """sha256 of the model's config and of every parameter and buffer (name, dtype, shape and bytes)."""
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    digest.update(json.dumps(config.to_dict() if hasattr(config, "to_dict") else repr(config),
                             sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()


def _code_hash() -> str:
    digest = hashlib.sha256()
    for name in CODE_FILES:
        path = DEPLOY_DIR / name
        digest.update(path.read_bytes() if path.is_file() else name.encode())
    return digest.hexdigest()[:16]


def machine_facts(threads: int) -> dict[str, Any]:
    """What the timings and the int8 kernels depend on: CPU name and flags, threads, runtime versions."""
    from sdpose_core.precision import cpu_flags, cpu_name

    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    flags = sorted(cpu_flags())
    return {"cpu": cpu_name(), "cpu_flags_sha256": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
            "threads": int(threads), "torch": torch.__version__, "onnxruntime": ort_version}


def selection_key(model: nn.Module, threads: int, candidates: Sequence[str], graph_cycles: Sequence[int],
                  tolerance: dict[str, float]) -> tuple[str, dict[str, Any]]:
    """(folder name, what went into it) for one model's backend choice on this machine."""
    parts = {"weights_sha256": weights_hash(model), "candidates": list(candidates),
             "graph_cycles": [int(c) for c in graph_cycles], "tolerance": dict(tolerance),
             "code": _code_hash(), **machine_facts(threads)}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    return key, parts


def writable_folder(folder: Path) -> tuple[Path, str | None]:
    """`folder`, created; or a fresh temporary folder and a note saying why when it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
        return folder, None
    except OSError as exc:
        temporary = Path(tempfile.mkdtemp(prefix="sdpose_backend_"))
        return temporary, (f"cache folder {folder} is not writable ({exc.strerror or exc}); the exported graphs "
                           f"live in {temporary} for this process only")


def prune_old_choices(backends: Path, keep: int = 8) -> list[Path]:
    """Delete all but the `keep` most recently used choice folders under `backends` (each holds the exported
    graphs of one model; a new code version or new weights make a new one). Returns the removed."""
    import shutil

    try:
        folders = sorted((p for p in backends.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                         reverse=True)
    except OSError:
        return []
    removed = []
    for folder in folders[keep:]:
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a reader never sees half a file (another process may be choosing at once)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)
