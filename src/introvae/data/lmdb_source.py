"""LMDB databases of encoded images as a data source (hence the name, beside folder_source.py), the format LSUN
ships: values are image files' bytes (webp, jpeg, png) under arbitrary keys (--data lmdb:PATH, or a folder holding
data.mdb). Needs the optional `lmdb` package (`pip install introvae[lmdb]`).

The environment is opened read-only without a lock file (lock=False), so a database on a read-only or
shared file system works, once per process (an LMDB handle must not cross a fork). Keys are
listed once, in LMDB's sorted order; each key is an item's name, hashed for the train/test split like a
folder's relative paths (a database whose keys are a folder's relative paths splits like that folder).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from introvae.data.base import DataRequest, DataSourceKind, DecodingSource, ImageSource, Items
from introvae.data.scan import bytes_opener
from introvae.errors import DataError
from introvae.images import load_image

__all__ = ["LMDBSource", "LMDB", "lmdb_items", "is_lmdb_spec", "key_name"]


def _lmdb_module(path: Path) -> Any:
    try:
        import lmdb
    except ImportError as e:
        raise DataError(
            f"{path} is an LMDB database, and reading it needs the lmdb package: pip install lmdb "
            "(or pip install introvae[lmdb])."
        ) from e
    return lmdb


# One environment per database and process: LMDB must not open the same database twice in a process, and a
# handle must not be used across a fork.
_ENVIRONMENTS: dict[tuple[str, int], Any] = {}
_ENVIRONMENTS_LOCK = threading.Lock()


def _environment(path: Path) -> Any:
    key = (str(Path(path).resolve()), os.getpid())
    with _ENVIRONMENTS_LOCK:
        env = _ENVIRONMENTS.get(key)
        if env is None:
            env = _ENVIRONMENTS[key] = _open_environment(path)
        return env


def _open_environment(path: Path) -> Any:
    lmdb = _lmdb_module(path)
    if not path.exists():
        raise DataError(f"LMDB database {path} does not exist; pass the folder that holds data.mdb.")
    try:
        # readahead=False: training reads records in random order, and the OS read-ahead would only waste I/O.
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False,
                         subdir=path.is_dir(), max_readers=1024)
    except lmdb.Error as e:
        raise DataError(f"LMDB database {path} cannot be opened ({e}); check the path and its permissions.") from e


def key_name(key: bytes) -> str:
    """An item's name: the key as text when it is UTF-8 (LSUN's keys are), else its hex digits."""
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + key.hex()
    return text if text.isprintable() else "0x" + key.hex()


class LMDBSource(DecodingSource):
    """Records of an LMDB database decoded (and resized, cropped) on every `get`, by a pool of threads."""

    def __init__(self, path: Path, keys: list[bytes], names: list[str], size: int, channels: int,
                 num_threads: int = 4) -> None:
        super().__init__()
        if len(keys) != len(names):
            raise ValueError(f"LMDBSource got {len(keys)} keys but {len(names)} names")
        self.path = Path(path)
        self.keys = list(keys)
        self.names = list(names)
        self.size = size
        self.channels = channels
        self.num_threads = max(1, num_threads)
        self.where = f"LMDB {self.path}"

    def _payloads(self, indices: list[int]) -> list[bytes | None]:
        return read_records(_environment(self.path), [self.keys[i] for i in indices])

    def _decode(self, payload: bytes | None, index: int) -> torch.Tensor:
        if payload is None:
            raise DataError(f"The record {self.names[index]} of {self.where} cannot be read any more.")
        return load_image(payload, self.size, self.channels, name=f"{self.names[index]} in {self.where}")


def read_records(env: Any, keys: list[bytes]) -> list[bytes | None]:
    """The values of `keys` (None for a missing key or a read error), read in one transaction."""
    import lmdb
    try:
        with env.begin(write=False, buffers=False) as txn:
            return [txn.get(key) for key in keys]
    except lmdb.Error:
        out: list[bytes | None] = []
        for key in keys:  # find the record that fails; the others are still good
            try:
                with env.begin(write=False, buffers=False) as txn:
                    out.append(txn.get(key))
            except lmdb.Error:
                out.append(None)
        return out


def _lmdb_path(spec: str) -> Path:
    return Path(spec[len("lmdb:"):] if spec.startswith("lmdb:") else spec).expanduser()


def is_lmdb_spec(spec: str) -> bool:
    """"lmdb:PATH", or a folder holding data.mdb (LSUN's layout)."""
    if spec.startswith("lmdb:"):
        return True
    path = Path(spec).expanduser()
    try:
        return path.is_dir() and (path / "data.mdb").is_file()
    except OSError as e:  # e.g. a folder without read/search permission on the way
        reason = "permission denied" if isinstance(e, PermissionError) else (e.strerror or type(e).__name__)
        raise DataError(f"Data path {path} cannot be read ({reason}); check its permissions.") from e


def lmdb_items(request: DataRequest) -> Items:
    """The records of the LMDB database that `request.spec` names, listed in key order."""
    path = _lmdb_path(request.spec)
    env = _environment(path)
    lmdb = _lmdb_module(path)
    try:
        with env.begin(write=False) as txn:
            keys = list(txn.cursor().iternext(keys=True, values=False))
    except lmdb.Error as e:
        raise DataError(f"LMDB database {path} cannot be read ({e}); check that it is not damaged.") from e
    if not keys:
        raise DataError(f"LMDB database {path} holds no records; pass a database of encoded images.")
    names = [key_name(k) for k in keys]

    def fetch(indices: list[int]) -> list[Callable[[], BinaryIO]]:
        return [bytes_opener(v) for v in read_records(env, [keys[i] for i in indices])]

    def serve(items: list[int], channels: int) -> ImageSource:
        return LMDBSource(path, [keys[i] for i in items], [names[i] for i in items], request.size, channels)

    return Items(title=f"LMDB {path}", where=f"LMDB database {path}", source=f"lmdb:{path}", names=names,
                 serve=serve, fetch=fetch, kind="record")


LMDB = DataSourceKind("lmdb", "an LMDB database", matches=is_lmdb_spec, open=lmdb_items)
