"""The board's TFLM and our firmware code on Cortex-M4F under QEMU (mps2-an386), with the board's flags.

    programs = build_programs(kit, jobs)           # ELFs of firmware/qemu/*.cc, cached under build/
    scores, counts = infer_windows(programs, windows)
    records, counts = run_stream(programs, samples)

TFLM is compiled from the kit's library archive (CMSIS-NN kernels, as on the board) with the compiler flags
the Arduino Mbed variant gives every source (-mcpu=cortex-m4 -mfloat-abi=softfp -mfpu=fpv4-sp-d16 -Os ...),
once per hash of sources, flags and compiler (build/tflm-m4/). Our unchanged model_runner.cpp, kws_core,
kissfft and the exported model link with it and the harnesses of firmware/qemu/. Instructions are counted
with QEMU's -icount (firmware/qemu/instruction_clock.h). host_tools/board_benchmark.py puts it together.
"""
from __future__ import annotations

import configparser
import hashlib
import re
import shutil
import subprocess
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from host_tools.board_build import FIRMWARE_DIR, REPO_ROOT, BoardBuildError
from host_tools.c_build import CORE_DIR, CORE_HEADERS, CORE_SOURCES, find_tool, require_kissfft_sources

QEMU_DIR = FIRMWARE_DIR / "qemu"
GENERATED_DIR = FIRMWARE_DIR / "src" / "generated"
TFLM_CACHE = REPO_ROOT / "build" / "tflm-m4"
PROGRAM_CACHE = REPO_ROOT / "build" / "firmware" / "qemu"
TFLM_ARCHIVE = "Chirale_TensorFlowLite-2.0.0.tar.gz"
FRAMEWORK_ARCHIVE = "framework-arduino-mbed-4.5.0-nano33ble.tar.gz"
VARIANT = "variants/ARDUINO_NANO33BLE/"
# TFLM library sources left out: system_setup.cpp and peripherals/ are Arduino code (Serial, millis), whose
# one job here, DebugLog, firmware/qemu/tflm_target.cc does; the kissfft units, as on the board
# (firmware/scripts/tflm_without_kissfft.py).
TFLM_EXCLUDED = ("tensorflow/lite/micro/system_setup.cpp", "peripherals/", "third_party/kissfft/")
# What PlatformIO's Arduino builder defines for every source; TFLM's code differs under ARDUINO.
BUILDER_DEFINES = ["-DARDUINO=10810", "-DARDUINO_ARCH_MBED"]
PROGRAMS = ("infer_windows", "pipeline_stream", "arena_probe")
QEMU_TIMEOUT_S = 600


def _archive_text(archive: Path, suffix: str) -> str:
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith(suffix)), None)
        if member is None:
            raise BoardBuildError(f"{archive} has no {suffix}: not the kit's Arduino Mbed core")
        return tar.extractfile(member).read().decode()


def board_flags(kit: Path) -> dict[str, list[str]]:
    """{'c', 'cxx', 'link'} flags: the variant's code generation and warning flags (cflags.txt,
    cxxflags.txt, read by PlatformIO's builder for every source), platformio.ini's -f build flags
    (-ffp-contract=off) and the builder's defines; linking for QEMU's semihosting with newlib-nano."""
    config = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    config.read(FIRMWARE_DIR / "platformio.ini")
    project = [flag for flag in config.get("env:nano33ble", "build_flags").split() if flag.startswith("-f")]
    flags = {}
    for name in ("c", "cxx"):
        text = _archive_text(kit / FRAMEWORK_ARCHIVE, f"{VARIANT}{name}flags.txt")
        variant = [flag for flag in text.split() if flag.startswith(("-m", "-O", "-f", "-std=", "-W"))]
        flags[name] = variant + project + BUILDER_DEFINES
    machine = [flag for flag in flags["c"] if flag.startswith("-m")]
    flags["link"] = [*machine, "--specs=nano.specs", "--specs=rdimon.specs", "-Wl,--gc-sections",
                     "-Wl,-u,_printf_float", "-T", str(CORE_DIR / "qemu" / "mps2_an386.ld")]
    return flags


def gcc() -> str:
    return find_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")


def gxx() -> str:
    return find_tool("arm-none-eabi-g++", "gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib")


def _digest(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.read_bytes() if isinstance(part, Path) else repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _compile_all(jobs: list[tuple[Path, Path, list[str]]], workers: int) -> None:
    """(source, object, flags) compiled in parallel; BoardBuildError with the first compiler error."""
    def run(job):
        source, obj, flags = job
        obj.parent.mkdir(parents=True, exist_ok=True)
        command = [gcc() if source.suffix == ".c" else gxx(), *flags, "-c", str(source), "-o", str(obj)]
        result = subprocess.run(command, capture_output=True, text=True)
        return None if result.returncode == 0 else f"{' '.join(command)}\n{result.stderr[-4000:]}"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        errors = [error for error in pool.map(run, jobs) if error]
    if errors:
        raise BoardBuildError(f"{len(errors)} compilations failed; the first:\n{errors[0]}")


def tflm_library(kit: Path, flags: dict[str, list[str]], workers: int) -> Path:
    """build/tflm-m4/<hash>/ with the library's sources (src/, for its headers) and libtflm.a, built once."""
    archive = kit / TFLM_ARCHIVE
    version = subprocess.run([gcc(), "--version"], capture_output=True, text=True).stdout
    out = TFLM_CACHE / _digest(archive, flags["c"], flags["cxx"], TFLM_EXCLUDED, version)
    if (out / "libtflm.a").is_file():
        return out
    TFLM_CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=TFLM_CACHE))  # renamed to `out` when complete: never half a cache
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if "/src/" in m.name]
            for member in members:
                member.name = member.name.split("/src/", 1)[1]
            tar.extractall(work / "src", members=members, filter="data")
        sources = [p for p in sorted((work / "src").rglob("*")) if p.suffix in (".c", ".cc", ".cpp")
                   and not str(p.relative_to(work / "src")).startswith(TFLM_EXCLUDED)]
        include = ["-I", str(work / "src"), "-w"]  # third-party code: its warnings are not ours to fix
        _compile_all([(s, work / "obj" / f"{s.relative_to(work / 'src')}.o",
                       [*flags["c" if s.suffix == ".c" else "cxx"], *include]) for s in sources], workers)
        ar = find_tool("arm-none-eabi-ar", "binutils-arm-none-eabi")
        subprocess.run([ar, "rcs", str(work / "libtflm.a"), *map(str, sorted((work / "obj").rglob("*.o")))], check=True)
        if not (out / "libtflm.a").is_file():  # else a concurrent build finished first
            work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone when renamed; else a failed or a concurrent duplicate build
    return out


def build_programs(kit: Path, workers: int) -> dict[str, Path]:
    """The ELFs of firmware/qemu's harnesses, linked with our firmware code and the board-flag TFLM, cached
    under build/firmware/qemu/<hash of every input>/."""
    flags = board_flags(kit)
    tflm = tflm_library(kit, flags, workers)
    kissfft = require_kissfft_sources()
    ours_c = [*CORE_SOURCES, CORE_DIR / "qemu" / "startup.c", QEMU_DIR / "instruction_clock.c"]
    ours_cxx = [FIRMWARE_DIR / "src" / "model_runner.cpp", GENERATED_DIR / "kws_model_data.cc",
                QEMU_DIR / "tflm_target.cc"]
    mains = {name: QEMU_DIR / f"{name}.cc" for name in PROGRAMS}
    inputs = [*ours_c, *ours_cxx, *mains.values(), *CORE_HEADERS, *sorted(GENERATED_DIR.glob("*.h")),
              *sorted(QEMU_DIR.glob("*.h")), FIRMWARE_DIR / "src" / "model_runner.h",
              CORE_DIR / "qemu" / "mps2_an386.ld", *sorted(kissfft.glob("*.[ch]"))]
    out = PROGRAM_CACHE / _digest(*inputs, flags, tflm.name)
    elves = {name: out / f"{name}.elf" for name in PROGRAMS}
    if all(elf.is_file() for elf in elves.values()):
        return elves
    includes = ["-I", str(CORE_DIR / "include"), "-I", str(FIRMWARE_DIR / "src"), "-I", str(GENERATED_DIR),
                "-I", str(kissfft), "-I", str(QEMU_DIR), "-I", str(tflm / "src")]
    jobs = [(s, out / "obj" / f"{s.name}.o", [*flags["c"], "-std=c11", "-Werror", *includes]) for s in ours_c]
    jobs += [(kissfft / name, out / "obj" / f"{name}.o", [*flags["c"], "-std=c11", *includes])
             for name in ("kiss_fft.c", "kiss_fftr.c")]
    jobs += [(s, out / "obj" / f"{s.name}.o", [*flags["cxx"], "-Werror", *includes])
             for s in [*ours_cxx, *mains.values()]]
    _compile_all(jobs, workers)
    main_objects = {name: out / "obj" / f"{source.name}.o" for name, source in mains.items()}
    common = [str(obj) for _, obj, _ in jobs if obj not in main_objects.values()]
    for name, elf in elves.items():
        partial = elf.with_suffix(".partial")  # renamed when complete: an interrupted link is never reused
        command = [gxx(), *flags["link"], str(main_objects[name]), *common, str(tflm / "libtflm.a"), "-lm",
                   "-o", str(partial)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BoardBuildError(f"linking {elf.name} failed:\n{result.stderr[-4000:]}")
        partial.replace(elf)
    return elves


def run_qemu(elf: Path, args: list[str], cwd: Path) -> str:
    """The program's stdout, run on QEMU's Cortex-M4F board with semihosting (files relative to `cwd`) and
    one nanosecond of virtual time per instruction."""
    qemu = find_tool("qemu-system-arm", "qemu-system-arm")
    semihosting = ",".join(["enable=on", "target=native", *(f"arg={arg}" for arg in [elf.stem, *args])])
    command = [qemu, "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none", "-icount", "shift=0",
               "-kernel", str(elf), "-semihosting-config", semihosting]
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=QEMU_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BoardBuildError(f"{elf.name} did not finish under QEMU within {QEMU_TIMEOUT_S} s") from None
    if result.returncode != 0:
        raise BoardBuildError(f"{elf.name} {' '.join(args)} failed under QEMU (exit {result.returncode}):\n"
                              f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def _counts(line: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def infer_windows(programs: dict[str, Path], windows: np.ndarray, label_count: int) -> tuple[np.ndarray, dict]:
    """model_runner on Cortex-M4F for each int8 window: (int8 scores per window, instruction counts)."""
    with tempfile.TemporaryDirectory() as scratch:
        np.ascontiguousarray(windows, np.int8).tofile(Path(scratch) / "windows.i8")
        output = run_qemu(programs["infer_windows"], ["windows.i8", "scores.i8"], Path(scratch))
        scores = np.fromfile(Path(scratch) / "scores.i8", np.int8).reshape(-1, label_count)
    return scores, _counts(output)


def run_stream(programs: dict[str, Path], samples: np.ndarray) -> tuple[list[str], dict]:
    """main.cpp's loop on Cortex-M4F over int16 audio: (protocol records, instruction counts)."""
    with tempfile.TemporaryDirectory() as scratch:
        np.ascontiguousarray(samples, np.int16).tofile(Path(scratch) / "audio.raw")
        output = run_qemu(programs["pipeline_stream"], ["audio.raw"], Path(scratch))
    lines = output.splitlines()
    counts = next((line for line in lines if line.startswith("# counts")), None)
    if counts is None:
        raise BoardBuildError(f"pipeline_stream printed no counts:\n{output[-2000:]}")
    return [line.rstrip("\r") for line in lines if line.startswith("KWS")], _counts(counts)


def smallest_arena(programs: dict[str, Path]) -> dict[str, int]:
    """{'arena_min', 'arena_used'}: the smallest arena in which the model allocates and runs on Cortex-M4F."""
    with tempfile.TemporaryDirectory() as scratch:
        return _counts(run_qemu(programs["arena_probe"], [], Path(scratch)))
