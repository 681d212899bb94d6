"""The files of weights and training state: safetensors without pickle, each stamped with its format version.

* Weights (`save_networks`, `load_networks`): the networks' parameters and buffers, keys ``encoder.*`` and
  ``generator.*``; all that sampling needs. The file's metadata carries the run's config (``config``, the JSON of
  config.json), the step and the format version (`introvae.formats`), so the file describes itself: `Model.load(FILE)`
  works on a copy anywhere. An exported file also carries the run's code density, as tensors ``code_density.*``.
* A training state (`save_tree`, `load_tree`): everything else that exact resumption needs (the optimizers, the step,
  the images consumed, the engine's state), a tree of tensors whose structure is stored as JSON in the metadata.

Nothing is unpickled on loading: a file that is not safetensors (a pickle, a torch.save archive) is refused as
unreadable, and nothing in it runs. Every file is written atomically (`introvae.atomic`). Where these files sit in a
run, which are complete and which are kept, is the run directory's business (`introvae.rundir`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

from .atomic import atomic_write_bytes
from .errors import UserError
from .formats import FORMAT_KEY, FORMAT_VERSION, check_version

DENSITY_KEY = "code_density"  # the prefix of a code density's tensors inside a weights file (`introvae export`)
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


class CheckpointMismatch(UserError):
    """A readable checkpoint that does not fit the networks of the run's config (another size or model)."""


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
    metadata = {"tree": json.dumps(skeleton), FORMAT_KEY: str(FORMAT_VERSION)}
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=metadata))


def _unreadable(path: Path, reason: str) -> UserError:
    return UserError(f"{path} is not a readable safetensors file ({reason}); it may be damaged or not a checkpoint.")


def metadata_of_bytes(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's JSON header, from the file's bytes (torch's loader returns only
    the tensors)."""
    header_len = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; anything else (a pickle included) is refused unread."""
    try:
        data = path.read_bytes()
        tensors = load_safetensors_bytes(data)
        metadata = metadata_of_bytes(data)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise _unreadable(path, "a directory") from None
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError) as error:
        raise _unreadable(path, str(error)) from None
    return tensors, metadata


def check_safetensors(*paths: Path) -> None:
    """Raise UserError unless every one of `paths` is a whole safetensors file, reading only the headers (cheap for
    big files)."""
    for path in paths:
        _check_one(path)


def _check_one(path: Path) -> None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _unreadable(path, f"{size} bytes, shorter than a header")
            header_len = int.from_bytes(head, "little")
            if header_len > min(size - 8, _MAX_HEADER):
                raise _unreadable(path, "no safetensors header at its start")
            header = json.loads(f.read(header_len))
        if not isinstance(header, dict):
            raise _unreadable(path, "its header is not a JSON object")
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise _unreadable(path, "a directory") from None
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, IndexError) as error:
        raise _unreadable(path, f"bad header: {error}") from None
    if 8 + header_len + end != size:
        raise _unreadable(path, f"{size} bytes where the header promises {8 + header_len + end}: truncated?")


def load_tree(path: Path) -> Any:
    tensors, metadata = _read_safetensors(path)
    check_version(metadata.get(FORMAT_KEY), path)
    if "tree" not in metadata:
        raise UserError(f"{path} holds no training state (no 'tree' metadata).")
    try:
        return _unflatten(json.loads(metadata["tree"]), tensors)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} holds a damaged training state ({type(error).__name__}: {error}).") from None


def save_networks(path: Path, networks: nn.ModuleDict, config: dict[str, Any] | None = None,
                  density: dict[str, Tensor] | None = None, **metadata: str) -> None:
    """Write the networks' state as safetensors; `config` (a `Config.to_dict()`) and `metadata` (strings) go into
    the file's metadata, so that the file alone says which networks it holds. `density` (a code density's tensors)
    is stored beside them under DENSITY_KEY."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in networks.state_dict().items()}
    tensors.update({f"{DENSITY_KEY}.{k}": v.detach().to("cpu").contiguous() for k, v in (density or {}).items()})
    described = {"format": "introvae", FORMAT_KEY: str(FORMAT_VERSION), **metadata}
    if config is not None:
        described["config"] = json.dumps(config)
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=described))


def _header(path: Path) -> dict[str, Any]:
    """The JSON header of a whole safetensors file (tensor names -> dtype, shape, offsets; and __metadata__)."""
    path = Path(path)
    check_safetensors(path)
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(header_len))


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file, reading its header only (a checkpoint's weights are not loaded)."""
    metadata = _header(path).get("__metadata__") or {}
    return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}


def config_of_weights(path: Path) -> dict[str, Any] | None:
    """The config a weights file carries (the JSON object of config.json), or None for a file without one (what
    `save_networks` writes without `config`). UserError for a file that is not safetensors, from a newer introvae, or
    whose config is damaged."""
    metadata = read_metadata(path)
    check_version(metadata.get(FORMAT_KEY), path)
    text = metadata.get("config")
    if text is None:
        return None
    try:
        config = json.loads(text)
    except ValueError:
        config = None
    if not isinstance(config, dict):
        raise UserError(f"{path} carries a damaged config in its metadata; load it through its run directory.")
    return config


def network_names(path: Path) -> set[str]:
    """The networks a weights file holds: the first part of its tensor names (encoder, generator, ...)."""
    return {key.split(".", 1)[0] for key in _header(path) if key != "__metadata__"} - {DENSITY_KEY}


def stored_density(path: Path) -> dict[str, Tensor]:
    """The code density's tensors a weights file carries (names without DENSITY_KEY), {} when it carries none; reads
    only those tensors, not the weights."""
    check_safetensors(path)
    prefix = DENSITY_KEY + "."
    with safe_open(str(path), framework="pt") as f:
        return {key[len(prefix):]: f.get_tensor(key) for key in f.keys() if key.startswith(prefix)}


def load_networks(path: Path, networks: nn.ModuleDict) -> None:
    """Load a weights file into `networks` (CheckpointMismatch when they do not fit it, UserError when it cannot be
    read)."""
    tensors, metadata = _read_safetensors(path)
    check_version(metadata.get(FORMAT_KEY), path)
    tensors = {key: value for key, value in tensors.items() if not key.startswith(DENSITY_KEY + ".")}
    expected = networks.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        detail = (missing or unexpected or wrong)[0]
        raise CheckpointMismatch(f"{path} does not fit the networks of this run's config.json (first mismatch: "
                                 f"{detail}); was it written by a run with another model, image size, latent size or "
                                 "width?")
    networks.load_state_dict(tensors)
