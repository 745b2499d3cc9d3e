"""Fetch kissfft's C sources, pinned, for builds that cannot use Debian's host library (ARM).

Downloads the Debian source package of exactly the version `libkissfft-dev` installs on the
host (bookworm's 131.1.0-4.1~deb12u1), checks both tarballs against the SHA-256 of its .dsc,
unpacks upstream's sources and applies Debian's patch series, so the ARM build runs the same
FFT code as the host library. Tarballs already present with the right hash are not fetched
again: after one run the step works offline.

The board build (firmware/platformio.ini) links this same tree as a local library, so the FFT that
QEMU checks is the FFT that is flashed; a library.json written here makes PlatformIO build it right.

    python firmware/lib/kws_core/tools/fetch_kissfft.py [--dest build/kissfft]
    -> build/kissfft/kissfft-131.1.0/{kiss_fft.c,kiss_fftr.c,library.json,...}
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

POOL = "https://deb.debian.org/debian/pool/main/k/kissfft/"
SOURCE_DIR = "kissfft-131.1.0"
TARBALLS = {  # name -> SHA-256, from kissfft_131.1.0-4.1~deb12u1.dsc
    "kissfft_131.1.0.orig.tar.gz": "76c1aac87ddb7258f34b08a13f0eebf9e53afa299857568346aa5c82bcafaf1a",
    "kissfft_131.1.0-4.1~deb12u1.debian.tar.xz": "bf7fe2596084b0a8b7e0486d9947cfd3216c4dac37924f266524ffae1de107e9",
}
REPO_ROOT = Path(__file__).resolve().parents[4]
# PlatformIO manifest: only the two units the core uses (tools/ and test/ hold programs with their
# own main() and a libpng dependency), compiled as ISO C11 like the host and QEMU builds, which
# rules out fused multiply-adds and so keeps the FFT's rounding the one the tests check.
LIBRARY_JSON = {
    "name": "kissfft",
    "version": "131.1.0",
    "description": "kissfft 131.1.0 with Debian's patches (bookworm 131.1.0-4.1~deb12u1), SHA-256 pinned",
    "license": "BSD-3-Clause",
    "frameworks": "*",
    "platforms": "*",
    "build": {"srcFilter": ["-<*>", "+<kiss_fft.c>", "+<kiss_fftr.c>"], "flags": ["-std=c11"]},
}


class FetchError(RuntimeError):
    pass


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download(name: str, expected: str, dest: Path) -> Path:
    path = dest / name
    if path.exists() and sha256(path) == expected:
        return path
    url = POOL + name.replace("~", "%7E")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            path.write_bytes(response.read())
    except OSError as error:
        raise FetchError(f"cannot download {url}: {error}") from None
    actual = sha256(path)
    if actual != expected:
        path.unlink()
        raise FetchError(f"{url}: SHA-256 {actual}, expected {expected}; deleted it")
    return path


def extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")  # refuses absolute paths, '..' and links outside


def fetch(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    orig, debian = (download(name, digest, dest) for name, digest in TARBALLS.items())
    source = dest / SOURCE_DIR
    shutil.rmtree(source, ignore_errors=True)
    extract(orig, dest)
    extract(debian, source)  # the debian/ folder goes inside the upstream tree, as dpkg-source does
    series = source / "debian" / "patches" / "series"
    for patch in series.read_text().split():
        if patch.startswith("#"):
            continue  # disabled in the series file
        result = subprocess.run(["patch", "-p1", "--quiet", "-i", f"debian/patches/{patch}"],
                                cwd=source, capture_output=True, text=True)
        if result.returncode != 0:
            raise FetchError(f"patch {patch} does not apply: {result.stdout}{result.stderr}")
    (source / "library.json").write_text(json.dumps(LIBRARY_JSON, indent=2) + "\n")
    return source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / "build" / "kissfft")
    args = parser.parse_args(argv)
    try:
        print(fetch(args.dest))
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
