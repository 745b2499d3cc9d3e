"""Building the firmware's portable core (firmware/lib/kws_core) off the board: for the host (a shared
library the host tools drive with ctypes, host_tools/core.py) and for the Nano 33 BLE Sense's Cortex-M4F.

Every build is for one model artifact (training/artifact.py): its C headers are generated from its
manifest by training.export into build/artifacts/<manifest digest>/, so a run folder builds as well
as firmware/src/generated, and two models never share a build.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from training.artifact import Artifact

REPO_ROOT = Path(__file__).resolve().parent.parent
CORE_DIR = REPO_ROOT / "firmware" / "lib" / "kws_core"
CORE_SOURCES = sorted((CORE_DIR / "src").glob("*.c"))
CORE_HEADERS = sorted((CORE_DIR / "include").glob("*.h"))
BUILD_DIR = REPO_ROOT / "build"
KISSFFT_HEADERS = Path("/usr/include/kissfft")  # Debian's libkissfft-dev: the host build's FFT
# Pinned kissfft sources for the ARM builds (`make kissfft`, firmware/lib/kws_core/tools/fetch_kissfft.py).
KISSFFT_SOURCE_DIR = BUILD_DIR / "kissfft" / "kissfft-131.1.0"
KISSFFT_SOURCES = ("kiss_fft.c", "kiss_fftr.c")
# ISO C11 also means -ffp-contract=off: no fused multiply-adds, so host and ARM round alike.
C_STANDARD = "-std=c11"
C_FLAGS = [C_STANDARD, "-Wall", "-Wextra", "-Werror", "-pedantic"]
# -Bsymbolic: the library calls its own functions, even when another model's core is loaded beside it.
HOST_FLAGS = ["-O2", "-shared", "-fPIC", "-Wl,-Bsymbolic"]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os"]


class FirmwareBuildError(RuntimeError):
    """A tool, package or file the build needs is missing, or the compiler failed."""


class ToolMissing(FirmwareBuildError):
    pass


def find_tool(name: str, debian_package: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolMissing(f"{name} not found: apt-get install {debian_package}")
    return path


def require_kissfft_headers() -> Path:
    if not (KISSFFT_HEADERS / "kiss_fftr.h").is_file():
        raise ToolMissing(f"kissfft headers not found in {KISSFFT_HEADERS}: apt-get install libkissfft-dev")
    return KISSFFT_HEADERS


def require_kissfft_sources() -> Path:
    if not all((KISSFFT_SOURCE_DIR / name).is_file() for name in KISSFFT_SOURCES):
        raise ToolMissing(f"kissfft sources not found in {KISSFFT_SOURCE_DIR}: run `make kissfft` "
                          "(firmware/lib/kws_core/tools/fetch_kissfft.py)")
    return KISSFFT_SOURCE_DIR


def compile_checked(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise FirmwareBuildError(f"{' '.join(command)}\n{result.stdout}{result.stderr}")


def generated_dir(artifact: Artifact) -> Path:
    """The artifact's C headers and model source, generated from its manifest (once per manifest)."""
    from training.export import export

    folder = BUILD_DIR / "artifacts" / artifact.manifest.digest()[:16]
    if not (folder / "kws_settings.h").is_file():
        export(folder, artifact.manifest, artifact.model, f"host_tools/c_build.py for {artifact.source}")
    return folder


def core_includes(artifact: Artifact) -> list[str]:
    """The core's one include path for its generated settings, beside its own headers and kissfft's."""
    return ["-I", str(CORE_DIR / "include"), "-I", str(generated_dir(artifact)), "-I", str(require_kissfft_headers())]


def _build_key(artifact: Artifact, gcc: str, extra_source: str) -> str:
    """Hash of everything the host library depends on: sources, headers, the manifest, flags, compiler."""
    digest = hashlib.sha256((artifact.manifest.digest() + extra_source).encode())
    for path in (*CORE_SOURCES, *CORE_HEADERS):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    digest.update(" ".join([*C_FLAGS, *HOST_FLAGS, version]).encode())
    return digest.hexdigest()[:16]


def build_host_library(artifact: Artifact, extra_source: str) -> Path:
    """The core compiled with the host gcc into a shared library, with `extra_source` (C text) beside it;
    cached in build/host_core/<hash of every input>/ and reused."""
    gcc = find_tool("gcc", "gcc")
    includes = core_includes(artifact)
    out = BUILD_DIR / "host_core" / _build_key(artifact, gcc, extra_source)
    library = out / "libkws_core.so"
    if library.is_file():
        return library
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        extra = Path(scratch) / "extra.c"
        extra.write_text(extra_source)
        built = Path(scratch) / library.name
        compile_checked([gcc, *C_FLAGS, *HOST_FLAGS, *includes, *map(str, CORE_SOURCES), str(extra),
                         "-o", str(built), "-lkissfft-float", "-lm"])
        built.replace(library)  # atomic: a concurrent user never loads a half-written library
    return library


def arm_size(objects) -> dict[str, tuple[int, int, int]]:
    """(text, data, bss) of each object or ELF file, by file name (arm-none-eabi-size)."""
    size = find_tool("arm-none-eabi-size", "binutils-arm-none-eabi")
    result = subprocess.run([size, *map(str, objects)], capture_output=True, text=True)
    if result.returncode != 0:
        raise FirmwareBuildError(f"arm-none-eabi-size failed: {result.stderr}")
    return {Path(row.split()[-1]).name: tuple(map(int, row.split()[:3])) for row in result.stdout.splitlines()[1:]}


def arm_gcc() -> str:
    return find_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")


def cross_compile_core(artifact: Artifact, out_dir: Path) -> list[Path]:
    """Every core unit compiled for the Nano 33 BLE Sense's Cortex-M4F; returns the objects."""
    gcc, includes = arm_gcc(), core_includes(artifact)  # kissfft's headers are portable: the pinned 131.1.0
    objects = []
    for source in CORE_SOURCES:
        objects.append(Path(out_dir) / f"{source.stem}.o")
        compile_checked([gcc, *C_FLAGS, *ARM_FLAGS, *includes, "-c", str(source), "-o", str(objects[-1])])
    return objects


def cross_compile_kissfft(out_dir: Path) -> list[Path]:
    """The pinned kissfft sources for Cortex-M4F (third-party code: without our -Wextra -pedantic)."""
    gcc, source_dir = arm_gcc(), require_kissfft_sources()
    objects = [Path(out_dir) / name.replace(".c", ".o") for name in KISSFFT_SOURCES]
    for name, obj in zip(KISSFFT_SOURCES, objects):
        compile_checked([gcc, C_STANDARD, *ARM_FLAGS, "-Wall", "-Werror", "-I", str(source_dir),
                         "-c", str(source_dir / name), "-o", str(obj)])
    return objects
