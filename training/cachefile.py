"""One array in one file, memory-mappable, that says when it is incomplete or corrupt.

Layout: the array's raw C-order bytes from offset 0 (so np.memmap maps it directly), then a UTF-8
JSON trailer (dtype, shape, SHA-256 and CRC-32 of the bytes, and whatever the caller adds), its
length as 8 little-endian bytes, and the 8-byte tag MAGIC. The trailer is written last, so a file
cut short has no tag; the file is written under a temporary name of the writer's own and renamed
into place, so a reader sees either the old file, the new one or none, never half of one.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

MAGIC = b"KWSCACHE"
TAIL = 16  # trailer length (8 bytes) + MAGIC
BLOCK = 64 << 20  # bytes hashed at a time: bounded memory for any array size
DTYPES = ("int16", "float32")


def _tmp_for(path: Path) -> tuple[int, Path]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return fd, Path(tmp)


def _finish(f, tmp: Path, path: Path, dtype, shape: tuple, sha: str, crc: int, meta: dict) -> None:
    trailer = json.dumps({**meta, "dtype": np.dtype(dtype).name, "shape": list(shape), "sha256": sha,
                          "crc32": f"{crc:08x}"}).encode()
    f.write(trailer)
    f.write(len(trailer).to_bytes(8, "little") + MAGIC)
    f.close()
    os.replace(tmp, path)  # atomic: concurrent writers of the same content just replace each other


def write(path: Path, chunks: Iterable[np.ndarray], dtype, row_shape: tuple, meta: dict,
          extra: Callable[[], dict] | None = None) -> None:
    """Stream `chunks` (each (k, *row_shape)) into `path`; `extra()` adds trailer fields known only at the end."""
    path = Path(path)
    fd, tmp = _tmp_for(path)
    try:
        with os.fdopen(fd, "wb") as f:
            sha, crc, rows = hashlib.sha256(), 0, 0
            for chunk in chunks:
                if len(chunk) == 0:
                    continue
                block = np.ascontiguousarray(chunk, dtype=dtype)
                if block.shape[1:] != tuple(row_shape):
                    raise ValueError(f"{path}: a chunk has rows of shape {block.shape[1:]}, expected {tuple(row_shape)}")
                view = memoryview(block).cast("B")
                f.write(view)
                sha.update(view)
                crc = zlib.crc32(view, crc)
                rows += len(block)
            _finish(f, tmp, path, dtype, (rows, *row_shape), sha.hexdigest(), crc, {**meta, **(extra() if extra else {})})
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_filled(path: Path, dtype, shape: tuple, meta: dict, fill: Callable[[Path], None]) -> None:
    """A file of `shape` whose bytes `fill(tmp)` writes in place (e.g. worker processes via np.memmap)."""
    path = Path(path)
    fd, tmp = _tmp_for(path)
    try:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        os.ftruncate(fd, nbytes)
        os.close(fd)
        fill(tmp)
        sha, crc = _digests(np.memmap(tmp, dtype, "r", shape=shape) if nbytes else np.zeros(shape, dtype))
        f = open(tmp, "r+b")
        f.seek(nbytes)
        _finish(f, tmp, path, dtype, shape, sha, crc, meta)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _blocks(array: np.ndarray):
    rows = max(1, BLOCK // max(array[0].nbytes if len(array) else 1, 1))
    for start in range(0, len(array), rows):
        yield memoryview(np.ascontiguousarray(array[start : start + rows])).cast("B")


def _digests(array: np.ndarray) -> tuple[str, int]:
    sha, crc = hashlib.sha256(), 0
    for view in _blocks(array):
        sha.update(view)
        crc = zlib.crc32(view, crc)
    return sha.hexdigest(), crc


def sha256_of(array: np.ndarray) -> str:
    """SHA-256 of an array's C-order bytes, a block at a time (never a full copy)."""
    return _digests(np.asarray(array))[0]


def crc32_of(array: np.ndarray) -> int:
    crc = 0
    for view in _blocks(array):
        crc = zlib.crc32(view, crc)
    return crc


def read_meta(path: Path) -> tuple[dict | None, str | None]:
    """The trailer of a cache file, or why there is none: (meta, None) or (None, reason)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            if size < TAIL:
                return None, f"truncated: {size} bytes"
            f.seek(size - TAIL)
            tail = f.read(TAIL)
            if tail[8:] != MAGIC:
                return None, "truncated or incomplete: no trailer at its end"
            length = int.from_bytes(tail[:8], "little")
            if length > size - TAIL:
                return None, "corrupt trailer length"
            f.seek(size - TAIL - length)
            meta = json.loads(f.read(length).decode())
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"unreadable trailer: {error}"
    if not isinstance(meta, dict) or meta.get("dtype") not in DTYPES or not isinstance(meta.get("shape"), list):
        return None, "trailer without a valid dtype and shape"
    if not all(isinstance(d, int) and d >= 0 for d in meta["shape"]):
        return None, f"invalid shape {meta['shape']}"
    expected = int(np.prod(meta["shape"])) * np.dtype(meta["dtype"]).itemsize
    if expected != size - TAIL - length:
        return None, f"{size - TAIL - length:,} data bytes where shape {meta['shape']} needs {expected:,} (truncated?)"
    return meta, None


def open_checked(path: Path, verify: bool = True) -> tuple[tuple[np.ndarray, dict] | None, str | None]:
    """((read-only memmap, meta), None) for a sound file; (None, reason) for a missing, cut or corrupt one.

    `verify` recomputes the CRC-32 of every byte (about 3 GB/s; the pages read stay in the page
    cache, which training reads next anyway).
    """
    meta, reason = read_meta(path)
    if meta is None:
        return None, reason
    shape = tuple(meta["shape"])
    array = np.memmap(path, meta["dtype"], "r", shape=shape) if np.prod(shape) else np.zeros(shape, meta["dtype"])
    if verify and f"{crc32_of(array):08x}" != meta.get("crc32"):
        return None, "corrupt: its checksum does not match its contents"
    return (array, meta), None
