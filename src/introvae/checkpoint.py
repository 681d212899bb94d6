"""Checkpoints without pickle: weights and training state as safetensors files, written atomically.

A checkpoint at step S is two files in RUN_DIR/checkpoints/:

* ``model-SSSSSSSS.safetensors``: the networks' parameters and buffers, keys ``encoder.*`` and ``generator.*``;
  this is all that sampling needs.
* ``train-SSSSSSSS.safetensors``: everything else that exact resumption needs (both optimizers, the step, the
  random-number generators, the data order), as a tree of tensors whose structure is stored as JSON in the file's
  metadata. Nothing in either file is unpickled on loading.

Every file is written to a temporary name in the same directory, flushed to disk and renamed, so a reader sees
either the previous file or the complete new one. The training-state file is written first, the model file last, and
a checkpoint counts only when both exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

from .atomic import atomic_write_bytes
from .errors import UserError

CHECKPOINT_DIR = "checkpoints"
_MODEL_RE = re.compile(r"^model-(\d{8})\.safetensors$")


# ---- a tree of tensors and JSON values <-> one safetensors file

def _flatten(obj: Any, tensors: dict[str, Tensor], prefix: str) -> Any:
    if isinstance(obj, Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        # Keys may be ints (optimizer state is keyed by parameter index): keep them as [key, value] pairs.
        return {"__dict__": [[k, _flatten(v, tensors, f"{prefix}.{k}" if prefix else str(k))] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, tensors, f"{prefix}.{i}" if prefix else str(i)) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_tree(path: Path, tree: Any) -> None:
    tensors: dict[str, Tensor] = {}
    skeleton = _flatten(tree, tensors, "")
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata={"tree": json.dumps(skeleton)}))


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        data = path.read_bytes()
        tensors = load_safetensors_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
    except FileNotFoundError:
        raise UserError(f"{path} does not exist.") from None
    except (SafetensorError, ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not a readable safetensors file ({error}); it may be damaged or not a checkpoint.") from None
    return tensors, metadata


def load_tree(path: Path) -> Any:
    tensors, metadata = _read_safetensors(path)
    if "tree" not in metadata:
        raise UserError(f"{path} holds no training state (no 'tree' metadata).")
    return _unflatten(json.loads(metadata["tree"]), tensors)


# ---- checkpoints of a run

def model_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"model-{step:08d}.safetensors"


def train_state_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"train-{step:08d}.safetensors"


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in a run, oldest first."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    steps = [int(m.group(1)) for p in directory.iterdir() if (m := _MODEL_RE.match(p.name))]
    return sorted(s for s in steps if train_state_path(run_dir, s).exists())


def save_networks(path: Path, networks: nn.ModuleDict) -> None:
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in networks.state_dict().items()}
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata={"format": "introvae"}))


def load_networks(path: Path, networks: nn.ModuleDict) -> None:
    tensors, _ = _read_safetensors(path)
    expected = networks.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        detail = (missing or unexpected or wrong)[0]
        raise UserError(f"{path} does not fit the networks of this run's config.json (first mismatch: {detail}); "
                        "was it written by a run with another image size, latent size or width?")
    networks.load_state_dict(tensors)


def save_checkpoint(run_dir: Path, step: int, networks: nn.ModuleDict, train_state: dict[str, Any], keep: int) -> None:
    save_tree(train_state_path(run_dir, step), train_state)
    save_networks(model_path(run_dir, step), networks)
    for old in checkpoint_steps(run_dir)[:-keep]:
        model_path(run_dir, old).unlink(missing_ok=True)
        train_state_path(run_dir, old).unlink(missing_ok=True)


def latest_step(run_dir: Path) -> int:
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise UserError(f"{run_dir} has no complete checkpoint in {CHECKPOINT_DIR}/: train it first, or check the path.")
    return steps[-1]
