"""Downloads of pinned archives (Speech Commands, its test set, LibriSpeech): resumable, verified by size and
SHA-256 whatever their origin, extracted safely, and the local-copy alternatives (--data-dir, $KWS_DATA_DIR)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from training.data import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / "data"
DATA_DIR_ENV = "KWS_DATA_DIR"


@dataclass(frozen=True)
class Archive:
    url: str
    size: int
    sha256: str
    folder: str  # extracted under the cache directory


ARCHIVES = {
    "v0.02": Archive(
        "https://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        2_428_923_189,
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        "speech_commands_v0.02",
    ),
    "v0.01": Archive(
        "https://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        1_489_096_277,
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        "speech_commands_v0.01",
    ),
    "test-v0.02": Archive(
        "https://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
        112_563_277,
        "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
        "speech_commands_test_set_v0.02",
    ),
    # Other speech for the streaming benchmark's negatives (5.4 h of read speech, FLAC). OpenSLR
    # publishes size and MD5; the SHA-256 is the one recorded by projects that pinned this archive.
    "librispeech-test-clean": Archive(
        "https://www.openslr.org/resources/12/test-clean.tar.gz",
        346_663_984,
        "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
        "librispeech_test_clean",
    ),
}


def _progress(name: str, done: int, total: int, started: float, out) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    out.write(f"\r{name}: {100 * done / total:5.1f}%  {done / 1e6:,.1f} / {total / 1e6:,.1f} MB  {rate / 1e6:.1f} MB/s")
    out.flush()


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _receive(url: str, part: Path, size: int, out, chunk: int) -> None:
    """Append the rest of `url` to `part` (resuming at its length when the server honours a range)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except (urllib.error.URLError, OSError) as error:
        raise DataError(f"cannot download {url}: {error}. Use --data-dir or {DATA_DIR_ENV} for a local copy") from None
    with response:
        if have and response.status != 206:  # the server ignored the range: start over
            have = 0
        if have:
            out.write(f"resuming {part.name} at {have / 1e6:,.1f} MB\n")
        started = time.monotonic()
        try:
            with open(part, "ab" if have else "wb") as f:
                done = have
                while block := response.read(chunk):
                    f.write(block)
                    done += len(block)
                    _progress(part.name, done, size, started, out)
        except OSError as error:
            raise DataError(f"downloading {url} into {part} stopped: {error}; run again to resume") from None
        out.write("\n")


def download(url: str, dest: Path, size: int, sha256: str, out=sys.stderr, chunk: int = 1 << 20) -> Path:
    """`dest`, verified by size and SHA-256: downloaded from `url` (resuming a partial `dest.part`) unless a
    verified copy is there. A file under the final name that is not the pinned archive is never used: a
    shorter one is resumed as a partial download, anything else is set aside as `dest.rejected`."""
    dest, verified = Path(dest), Path(dest).with_name(Path(dest).name + ".verified")
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        stamp = json.dumps({"size": dest.stat().st_size, "mtime_ns": dest.stat().st_mtime_ns, "sha256": sha256})
        if verified.is_file() and verified.read_text() == stamp:
            return dest
        if dest.stat().st_size < size and not part.exists():
            out.write(f"{dest} is shorter than the pinned {size:,} bytes: resuming it as a partial download\n")
            dest.replace(part)
        elif sha256_of(dest, chunk) == sha256 and dest.stat().st_size == size:
            verified.write_text(stamp)
            return dest
        else:
            dest.replace(dest.with_name(dest.name + ".rejected"))
            out.write(f"{dest} is not the pinned archive (size or SHA-256 differ): moved it to "
                      f"{dest.name}.rejected and downloading the pinned one\n")
    if part.exists() and part.stat().st_size > size:
        out.write(f"{part} is longer than the pinned {size:,} bytes: not a partial download of it; starting over\n")
        part.unlink()
    if not part.exists() or part.stat().st_size < size:
        _receive(url, part, size, out, chunk)
    got = part.stat().st_size
    if got != size:
        if got > size:
            part.unlink()
        raise DataError(f"{url}: got {got:,} bytes, expected {size:,}; "
                        + ("run again to resume" if got < size else "the oversized download was deleted"))
    digest = sha256_of(part, chunk)
    if digest != sha256:
        part.unlink()
        raise DataError(f"{url}: SHA-256 {digest} does not match the pinned {sha256}; the corrupt download was deleted")
    part.replace(dest)
    verified.write_text(json.dumps({"size": size, "mtime_ns": dest.stat().st_mtime_ns, "sha256": sha256}))
    return dest


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing absolute paths, '..', links and device files."""
    dest = Path(dest).resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                name = member.name
                if name.startswith(("/", "\\")) or Path(name).is_absolute():
                    raise DataError(f"{archive}: refusing absolute path {name!r}")
                if ".." in Path(name).parts:
                    raise DataError(f"{archive}: refusing path outside the destination {name!r}")
                if member.issym() or member.islnk():
                    raise DataError(f"{archive}: refusing link {name!r} -> {member.linkname!r}")
                if not (member.isfile() or member.isdir()):
                    raise DataError(f"{archive}: refusing special file {name!r}")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive}: cannot extract: {error}") from None


def fetch(version: str = "v0.02", cache_dir: Path = DEFAULT_CACHE_DIR, out=sys.stderr) -> Path:
    """The extracted folder of one of ARCHIVES, downloaded and extracted once into `cache_dir`. The folder
    counts as extracted only with a marker naming the archive's SHA-256 (written after extraction)."""
    if version not in ARCHIVES:
        raise DataError(f"unknown dataset version {version!r}: choose one of {', '.join(ARCHIVES)}")
    archive = ARCHIVES[version]
    folder = Path(cache_dir) / archive.folder
    complete = folder / ".extracted"
    if complete.is_file() and complete.read_text().strip() == archive.sha256:
        return folder
    tarball = download(archive.url, Path(cache_dir) / Path(archive.url).name, archive.size, archive.sha256, out)
    out.write(f"extracting {tarball} into {folder}\n")
    safe_extract(tarball, folder)
    complete.write_text(archive.sha256 + "\n")
    return folder


def resolve_data_dir(data_dir: str | None, version: str = "v0.02", cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """--data-dir, else $KWS_DATA_DIR, else the official archive downloaded into `cache_dir`."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            raise DataError(f"data directory {path} does not exist")
        return path
    return fetch(version, cache_dir)
