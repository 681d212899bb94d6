"""Checkpoints without pickle: weights and training state as safetensors files, written atomically.

A checkpoint at step S is two files in RUN_DIR/checkpoints/:

* ``model-SSSSSSSS.safetensors``: the networks' parameters and buffers, keys ``encoder.*`` and ``generator.*``;
  this is all that sampling needs. Its safetensors metadata carries the run's config (``config``, the JSON of
  config.json) and the step, so the file describes itself: `Model.load(FILE)` works on a copy anywhere. Files
  written before that carry only ``format``, and load through their run's config.json.
* ``density-SSSSSSSS.safetensors`` (written at the end of training, or when a command first needs it): the run's
  code density at that step (`introvae.density`), what sampling draws codes from by default. An exported weights file
  carries it inside, as tensors ``code_density.*``.
* ``train-SSSSSSSS.safetensors``: everything else that exact resumption needs (the optimizers, the step, the images
  consumed, the objective's own state, the learning-rate scale after divergence roll-backs), as a tree of tensors
  whose structure is stored as JSON in the file's metadata. Nothing in either file is unpickled on loading: a file
  that is not safetensors (a pickle, a torch.save archive) is refused as unreadable, and nothing in it runs.

Crash safety. Every file is written to a temporary name in the same directory, fsynced and renamed (see
`introvae.atomic`), so a reader sees either the previous file or the complete new one. The training-state file is
written first and the model file last, and a checkpoint counts only when both exist (`checkpoint_steps`). A process
killed at any moment therefore leaves the newest complete checkpoint untouched, at worst an orphaned training-state
file or a temporary file, which the next save deletes. Readers take the newest checkpoint that can be read
(`latest_step`, `load_newest`), falling back to an older one with a one-line warning if the newest is damaged.
A write that fails (a full disk) removes what it wrote and raises `CheckpointWriteError`, leaving the previous
checkpoint intact.
"""

from __future__ import annotations

import errno
import json
import re
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

from .atomic import atomic_write_bytes, remove_stale_temporaries
from .errors import UserError
from .nets.conv import fill_prior_statistics

CHECKPOINT_DIR = "checkpoints"
DENSITY_KEY = "code_density"  # the prefix of a code density's tensors inside a weights file (`introvae export`)
_CHECKPOINT_RE = re.compile(r"^(model|train)-(\d{8})\.safetensors$")
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header
T = TypeVar("T")


class CheckpointMismatch(UserError):
    """A readable checkpoint that does not fit the networks of the run's config (another size or model)."""


class CheckpointWriteError(UserError):
    """Writing a checkpoint failed (a full disk...); the previous checkpoint is intact."""


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


def check_safetensors(path: Path) -> None:
    """Raise UserError unless `path` is a whole safetensors file, reading only its header (cheap for big files)."""
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
    if "tree" not in metadata:
        raise UserError(f"{path} holds no training state (no 'tree' metadata).")
    try:
        return _unflatten(json.loads(metadata["tree"]), tensors)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} holds a damaged training state ({type(error).__name__}: {error}).") from None


# ---- checkpoints of a run

def model_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"model-{step:08d}.safetensors"


def train_state_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"train-{step:08d}.safetensors"


def density_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"density-{step:08d}.safetensors"


def _files_by_step(run_dir: Path) -> dict[int, set[str]]:
    """{step: {"model", "train"}} of the checkpoint files present under their final names."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    found: dict[int, set[str]] = {}
    if directory.is_dir():
        for p in directory.iterdir():
            if m := _CHECKPOINT_RE.match(p.name):
                found.setdefault(int(m.group(2)), set()).add(m.group(1))
    return found


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in a run (both files present), oldest first."""
    return sorted(step for step, kinds in _files_by_step(run_dir).items() if kinds == {"model", "train"})


def save_networks(path: Path, networks: nn.ModuleDict, config: dict[str, Any] | None = None,
                  density: dict[str, Tensor] | None = None, **metadata: str) -> None:
    """Write the networks' state as safetensors; `config` (a `Config.to_dict()`) and `metadata` (strings) go into
    the file's metadata, so that the file alone says which networks it holds. `density` (a code density's tensors)
    is stored beside them under DENSITY_KEY."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in networks.state_dict().items()}
    tensors.update({f"{DENSITY_KEY}.{k}": v.detach().to("cpu").contiguous() for k, v in (density or {}).items()})
    described = {"format": "introvae", **metadata}
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
    """The config a weights file carries (the JSON object of config.json), or None for a file from before weights
    described themselves. UserError for a file that is not safetensors or whose config is damaged."""
    text = read_metadata(path).get("config")
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
    tensors, _ = _read_safetensors(path)
    tensors = {key: value for key, value in tensors.items() if not key.startswith(DENSITY_KEY + ".")}
    expected = networks.state_dict()
    fill_prior_statistics(tensors, set(expected))  # checkpoints from before the generator kept them
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        detail = (missing or unexpected or wrong)[0]
        raise CheckpointMismatch(f"{path} does not fit the networks of this run's config.json (first mismatch: "
                                 f"{detail}); was it written by a run with another model, image size, latent size or "
                                 "width?")
    networks.load_state_dict(tensors)


def _describe_os_error(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "the disk is full (no space left on the device)"
    if error.errno == getattr(errno, "EDQUOT", None):
        return "the disk quota is exceeded"
    if error.errno == errno.EROFS:
        return "the file system is read-only"
    return error.strerror or str(error)


def save_checkpoint(run_dir: Path, step: int, networks: nn.ModuleDict, train_state: dict[str, Any], keep: int,
                    config: dict[str, Any] | None = None) -> None:
    """Write the checkpoint of `step`, then keep only the newest `keep` complete checkpoints.

    `config` (the run's `Config.to_dict()`) goes into the model file's metadata, with the step.

    Also deleted: temporary files and orphaned halves left by killed writes, and checkpoints of steps after `step`
    (a run that resumed from an older checkpoint because the newer ones were unreadable, or rolled back after
    diverging, has abandoned them). A failed write raises CheckpointWriteError and leaves the previous checkpoints
    as they were.
    """
    run_dir = Path(run_dir)
    directory = run_dir / CHECKPOINT_DIR
    remove_stale_temporaries(directory)
    before = checkpoint_steps(run_dir)
    train_file, model_file = train_state_path(run_dir, step), model_path(run_dir, step)
    had_model = model_file.exists()
    target = train_file
    try:
        save_tree(train_file, train_state)
        target = model_file
        save_networks(model_file, networks, config, step=str(step))
    except OSError as error:
        if not had_model:  # a training state without its weights is no checkpoint: do not leave it behind
            train_file.unlink(missing_ok=True)
        intact = (f"the previous checkpoint, at step {before[-1]}, is intact" if before
                  else "no checkpoint was written before")
        raise CheckpointWriteError(f"writing {target} failed: {_describe_os_error(error)}; {intact}.") from None
    # Oldest first, each checkpoint losing its model file before its training state, so that a process killed
    # halfway leaves only an orphaned training state, which does not count and is deleted next time.
    complete = [s for s in checkpoint_steps(run_dir) if s <= step]
    doomed = set(complete[:-keep])
    for other, kinds in _files_by_step(run_dir).items():
        if other > step or other in doomed or (other != step and kinds != {"model", "train"}):
            model_path(run_dir, other).unlink(missing_ok=True)
            train_state_path(run_dir, other).unlink(missing_ok=True)
    kept = set(checkpoint_steps(run_dir))
    for stale in directory.glob("density-*.safetensors"):  # densities of checkpoints deleted now or before
        if m := re.fullmatch(r"density-(\d{8})\.safetensors", stale.name):
            if int(m.group(1)) not in kept or int(m.group(1)) == step:  # a checkpoint written anew: refit its density
                stale.unlink(missing_ok=True)


def load_newest(run_dir: Path, load: Callable[[int], T]) -> tuple[int, T]:
    """(step, load(step)) for the newest complete checkpoint that `load` accepts.

    `load` raises UserError for a checkpoint it cannot read; the next older one is then tried, and a one-line
    warning names what was skipped. CheckpointMismatch (a readable checkpoint of another model) is raised at once:
    an older checkpoint of the same run would not fit either.
    """
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise UserError(f"{run_dir} has no complete checkpoint in {CHECKPOINT_DIR}/: train it first, or check the path.")
    skipped: list[tuple[int, UserError]] = []
    for step in reversed(steps):
        try:
            result = load(step)
        except CheckpointMismatch:
            raise
        except UserError as error:
            skipped.append((step, error))
            continue
        if skipped:
            first_step, first_error = skipped[0]
            more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
            warnings.warn(f"the checkpoint at step {first_step} cannot be used{more}: {first_error} "
                          f"Using the one at step {step}.", stacklevel=2)
        return step, result
    first_step, first_error = skipped[0]
    raise UserError(f"{run_dir} has no readable checkpoint: the newest, at step {first_step}, cannot be used: "
                    f"{first_error}")


def check_checkpoint(run_dir: Path, step: int) -> None:
    """Raise UserError unless both files of the checkpoint at `step` are whole safetensors files (headers only)."""
    check_safetensors(train_state_path(run_dir, step))
    check_safetensors(model_path(run_dir, step))


def latest_step(run_dir: Path) -> int:
    """The newest step whose two files exist and are whole safetensors files (with a warning if newer are not)."""
    return load_newest(run_dir, lambda step: check_checkpoint(run_dir, step))[0]
