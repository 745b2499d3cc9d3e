"""The board firmware built offline from the pinned PlatformIO kit, and run on Cortex-M4 under QEMU.

    python -m host_tools.board_build offline [--kit DIR]    (make firmware-offline)
    python -m host_tools.board_build qemu [--kit DIR]       (make firmware-qemu)

`offline` builds PlatformIO's `nano33ble` environment of firmware/platformio.ini from the kit (the pinned
platform, Arduino Mbed core and TFLM library as archives: ../shared/platformio, see its README) with no
network, PlatformIO's state kept under build/pio/. The kit has no Mbed OS (`libmbed.a`), so the link runs
against an empty stand-in and leaves Mbed OS's symbols undefined; the kit's check_undefined.py then fails
the build on any undefined symbol the Mbed OS headers do not declare. It checks that our sources compile
with -Wall and without warnings, that every object has the core's float ABI and that the feature code runs
on the FPU, and writes build/firmware/size.json (host_tools/board_size.py). `qemu` is
host_tools/board_benchmark.py (on host_tools/board_qemu.py): build/firmware/benchmark.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from host_tools.board_size import SizeError, size_report
from host_tools.c_build import FirmwareBuildError, find_tool, require_kissfft_sources
from training.artifact import Artifact, ArtifactError, load_artifact
from training.data import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
OUT_DIR = REPO_ROOT / "build" / "firmware"  # size.json, benchmark.json, logs, the linked ELF and map
PIO_DIR = REPO_ROOT / "build" / "pio"  # PlatformIO's core folder, workspace and the kit's generated configs
DEFAULT_KIT = REPO_ROOT.parent / "shared" / "platformio"
ENV_NAME = "nano33ble"
KIT_FILES = ("kit_setup.py", "check_undefined.py", "platform-nordicnrf52-10.11.0.tar.gz",
             "framework-arduino-mbed-4.5.0-nano33ble.tar.gz", "Chirale_TensorFlowLite-2.0.0.tar.gz")
# What Mbed OS calls in the code linked here: its startup runs main() (the Arduino core's, which runs
# setup() and loop(); --wrap,main routes it through Mbed's __wrap_main) and its vector table the PDM
# library's interrupt handler. Without libmbed.a nothing else refers to them, and --gc-sections would drop
# our whole program, and with it every undefined reference the check must see.
MBED_OS_CALLS = ("main", "PDM_IRQHandler_v")
# Our sources, as PlatformIO names them (relative to firmware/, where it runs): src/ and lib/kws_core/.
OUR_SOURCES = re.compile(r"^(src|lib/kws_core)/\S+\.(c|cc|cpp|h)$")


class BoardBuildError(RuntimeError):
    """The board build or one of its checks failed; the message names the file and the fix."""


def model_artifact() -> Artifact:
    """The model and settings the firmware is built with (firmware/src/generated), checked."""
    try:
        return load_artifact()
    except ArtifactError as error:
        raise BoardBuildError(str(error)) from None


def require_kit(kit: Path) -> Path:
    missing = [name for name in KIT_FILES if not (kit / name).is_file()]
    if missing:
        raise BoardBuildError(f"the offline PlatformIO kit at {kit} lacks {', '.join(missing)}: put the kit "
                              "(../shared/platformio) beside the repository or pass KIT=DIR")
    return kit.resolve()


def venv_tool(name: str) -> str:
    """A console script of this Python's environment (PlatformIO comes with the `firmware` extra)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if not path:
        raise BoardBuildError(f"{name} not found beside {sys.executable}: `make venv` installs it "
                              "(pip install -e '.[firmware]')")
    return path


def pio_environment() -> dict[str, str]:
    """PlatformIO's state under build/pio/ (never ~/.platformio), no telemetry or update checks, and the
    offline link's extra flags (see MBED_OS_CALLS); the same every run, so PlatformIO keeps its build."""
    standin = PIO_DIR / "kit" / "mbed-standin"
    roots = " ".join(f"-Wl,--undefined={name}" for name in MBED_OS_CALLS)
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PLATFORMIO_CORE_DIR": str(PIO_DIR / "core"), "PLATFORMIO_WORKSPACE_DIR": str(PIO_DIR / "workspace"),
            "PLATFORMIO_SETTING_ENABLE_TELEMETRY": "no", "PLATFORMIO_SETTING_CHECK_PLATFORMIO_INTERVAL": "3650",
            "PLATFORMIO_BUILD_FLAGS": f"-L{standin} -Wl,--warn-unresolved-symbols {roots}"}


def without_network() -> list[str]:
    """A command prefix that runs PlatformIO in a namespace with no network, where the system allows it."""
    for prefix in (["unshare", "--net"], ["unshare", "--map-root-user", "--net"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return []


def build_dir() -> Path:
    return PIO_DIR / "workspace" / "build" / ENV_NAME


def framework_dir() -> Path:
    return PIO_DIR / "core" / "packages" / "framework-arduino-mbed"


def run_platformio(kit: Path, jobs: int) -> tuple[Path, bool]:
    """`pio run -v` of the nano33ble environment from the kit; (its log, whether the network was cut off).
    Our own objects and the ELF are removed first, so every run shows their compiler flags and warnings and
    the linker's undefined references."""
    env = pio_environment()
    setup = subprocess.run([sys.executable, str(kit / "kit_setup.py"), "--project", str(FIRMWARE_DIR), "--env",
                            ENV_NAME, "--out", str(PIO_DIR / "kit"), "--mbed-standin"],
                           capture_output=True, text=True, env=env)
    if setup.returncode != 0:
        raise BoardBuildError(f"{kit / 'kit_setup.py'} failed:\n{setup.stdout}{setup.stderr}")
    ours = [*build_dir().glob("src/**/*.o"), *build_dir().glob("lib*/kws_core/*.o"), build_dir() / "firmware.elf"]
    for stale in ours:
        stale.unlink(missing_ok=True)
    isolation = without_network()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log = OUT_DIR / "pio-run.log"
    with open(log, "w") as out:
        result = subprocess.run([*isolation, venv_tool("pio"), "run", "-v", "-d", str(FIRMWARE_DIR), "-e", ENV_NAME,
                                 "-c", str(PIO_DIR / "kit" / "platformio.ini"), "-j", str(jobs)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BoardBuildError(f"the offline PlatformIO build failed (full log: {log}):\n{tail}")
    return log, bool(isolation)


def tool_commands(log: Path) -> list[list[str]]:
    """The compiler and linker command lines PlatformIO ran, as argument lists."""
    return [shlex.split(line) for line in log.read_text(errors="replace").splitlines()
            if re.match(r"arm-none-eabi-g(cc|\+\+) -o ", line)]


def check_our_compiles(log: Path) -> list[str]:
    """Every source of ours compiled with -Wall and the variant's softfp flags, and no warning in any of them;
    returns the sources."""
    ours = [command for command in tool_commands(log) if "-c" in command and OUR_SOURCES.search(command[-1])]
    if not ours:
        raise BoardBuildError(f"{log}: no compile command of firmware/src or lib/kws_core: was the build verbose?")
    problems = [f"{command[-1]}: compiled without {flag}" for command in ours
                for flag in ("-Wall", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16") if flag not in command]
    problems += [f"{command[-1]}: compiled with -mfloat-abi=soft" for command in ours if "-mfloat-abi=soft" in command]
    warnings = re.findall(r"^((\S+):\d+:\d+: warning: .*)$", log.read_text(errors="replace"), re.M)
    problems += [line for line, path in warnings if OUR_SOURCES.match(path)]
    if problems:
        raise BoardBuildError("our sources must compile with -Wall, softfp and without warnings:\n  "
                              + "\n  ".join(problems))
    return sorted({command[-1] for command in ours})


def float_abi(objects: list[Path]) -> dict[str, str]:
    """'softfp' (FPU instructions, arguments in core registers), 'hard' (arguments in FPU registers) or 'soft'
    (no FPU) for each object or archive member, from its ARM build attributes."""
    readelf = find_tool("arm-none-eabi-readelf", "binutils-arm-none-eabi")
    text = subprocess.run([readelf, "-A", *map(str, objects)], capture_output=True, text=True).stdout
    if not text.lstrip().startswith("File: "):  # readelf names the file only when there are several
        text = f"File: {objects[0]}\n{text}"
    result = {}
    for block in re.split(r"^File: ", text, flags=re.M)[1:]:
        name = block.splitlines()[0].strip()
        result[name] = ("hard" if "Tag_ABI_VFP_args: VFP registers" in block
                        else "softfp" if "Tag_FP_arch:" in block else "soft")
    return result


def check_float_abi(command: list[str]) -> dict[str, int]:
    """Every archive and object of the link is softfp, as Arduino's precompiled core libraries are
    (libcc_310_*.a; libmbed.a is built with the same variant flags); counts of objects per library."""
    inputs = [Path(arg) for arg in command if arg.endswith((".a", ".o")) and Path(arg).is_file()]
    core_libs = sorted((framework_dir() / "variants" / "ARDUINO_NANO33BLE" / "libs").glob("libcc_310_*.a"))
    abis = float_abi([*inputs, *core_libs])
    wrong = sorted(f"{name}: {abi}" for name, abi in abis.items() if abi != "softfp")
    if wrong:
        raise BoardBuildError("objects not built for the core's float ABI (softfp, -mfpu=fpv4-sp-d16):\n  "
                              + "\n  ".join(wrong[:20]))
    counts: dict[str, int] = {}
    for name in abis:
        library = Path(name.split("(")[0]).name
        counts[library] = counts.get(library, 0) + 1
    return counts


# The per-frame feature code: its float arithmetic must run on the FPU.
FEATURE_OBJECTS = ("feature_provider.c.o", "feature_window.c.o", "kiss_fft.c.o", "kiss_fftr.c.o")
# Run-time helpers a compiler calls for float or double arithmetic it does not do in hardware.
SOFT_FLOAT = re.compile(r"^__aeabi_(?:[fd](?:add|sub|rsub|mul|div|neg|cmp\w*|2\w+)|u?[il]2[fd])$"
                        r"|^__(?:add|sub|mul|div|neg)[sd]f3$|^__(?:float|fix)\w+$|^__(?:extendsfdf2|truncdfsf2)$")
# Set-up code may use them: kissfft computes its twiddle factors in double precision once, in kiss_fft*_alloc.
SET_UP = re.compile(r"(_alloc|_init)$")


def fpu_use(obj: Path) -> tuple[int, dict[str, list[str]]]:
    """(VFP instructions in the object, {function: soft-float helpers it calls}), from its disassembly and the
    relocations of each function's section (-ffunction-sections)."""
    objdump = find_tool("arm-none-eabi-objdump", "binutils-arm-none-eabi")
    readelf = find_tool("arm-none-eabi-readelf", "binutils-arm-none-eabi")
    code = subprocess.run([objdump, "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    vfp = len(re.findall(r"^\s+[0-9a-f]+:\s+(?:[0-9a-f]{4} ?){1,2}\s+v[a-z]+", code, re.M))
    relocations = subprocess.run([readelf, "-r", "-W", str(obj)], capture_output=True, text=True, check=True).stdout
    calls: dict[str, list[str]] = {}
    for block in relocations.split("Relocation section '")[1:]:
        function = block.split("'")[0].removeprefix(".rel").removeprefix(".text.")
        helpers = sorted({name for name in re.findall(r"\s(__\w+)", block) if SOFT_FLOAT.match(name)})
        if helpers:
            calls[function] = helpers
    return vfp, calls


def check_feature_code_fpu(objects: list[Path]) -> dict[str, int]:
    """The feature code uses FPU instructions and, outside its set-up, calls no soft-float helper;
    returns VFP instructions per object."""
    problems, counts = [], {}
    for obj in objects:
        vfp, calls = fpu_use(obj)
        counts[obj.name] = vfp
        problems += [f"{obj.name}: no VFP instruction"] if vfp == 0 else []
        problems += [f"{obj.name}: {function} calls {', '.join(helpers)}" for function, helpers in calls.items()
                     if not SET_UP.search(function)]
    if problems:
        raise BoardBuildError("the feature code does not run its float arithmetic on the FPU (float ABI "
                              "soft?):\n  " + "\n  ".join(problems))
    return counts


def feature_objects() -> list[Path]:
    found = {path.name: path for path in build_dir().glob("lib*/*/*.o") if path.name in FEATURE_OBJECTS}
    missing = sorted(set(FEATURE_OBJECTS) - set(found))
    if missing:
        raise BoardBuildError(f"{build_dir()} has no {', '.join(missing)}: run the offline build first")
    return [found[name] for name in FEATURE_OBJECTS]


def link_command(log: Path) -> list[str]:
    links = [command for command in tool_commands(log) if command[2].endswith("firmware.elf")]
    if not links:
        raise BoardBuildError(f"{log}: PlatformIO did not link firmware.elf")
    return links[-1]


def relink(command: list[str], out_dir: Path, extra: list[str]) -> Path:
    """PlatformIO's link command run again with `extra` arguments, its ELF and map into out_dir; returns the
    linker's output (how a change to the link is checked without a PlatformIO build)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    args = list(command)
    args[args.index("-o") + 1] = str(out_dir / "firmware.elf")
    args = [f"-Wl,-Map,{out_dir / 'firmware.map'}" if arg.startswith("-Wl,-Map,") else arg for arg in args]
    result = subprocess.run([*args, *extra], cwd=FIRMWARE_DIR, capture_output=True, text=True)
    output = out_dir / "link.log"
    output.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise BoardBuildError(f"the link failed (log: {output}):\n{result.stderr[-3000:]}")
    return output


def check_undefined(kit: Path, link_output: Path) -> list[str]:
    """The kit's check on the linker's output: every symbol the link left undefined must be declared in the
    Mbed OS headers of the installed framework. Returns the symbols; BoardBuildError naming those that are not."""
    result = subprocess.run([sys.executable, str(kit / "check_undefined.py"), str(link_output), str(framework_dir())],
                            capture_output=True, text=True)
    (link_output.parent / "undefined-symbols.txt").write_text(result.stdout + result.stderr)
    symbols = re.findall(r"^(?:mbed-os|NOT-FOUND)\s+(.+)$", result.stdout, re.M)
    missing = re.findall(r"^NOT-FOUND\s+(.+)$", result.stdout, re.M)
    if result.returncode != 0:
        why = (f"{len(missing)} undefined symbols Mbed OS does not provide: {', '.join(missing)} (a source or "
               "library missing from the build, or a typo)" if missing else result.stderr.strip())
        raise BoardBuildError(f"link check failed ({link_output}): {why}")
    return symbols


def toolchain() -> str:
    gcc = find_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    version = subprocess.run([gcc, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    return f"arm-none-eabi-gcc {version} (Debian); the board's own PlatformIO toolchain is GCC 7.2.1"


def offline(kit: Path, jobs: int) -> dict:
    """The whole offline build and its checks; writes build/firmware/size.json and returns a summary."""
    kit = require_kit(kit)
    require_kissfft_sources()
    log, isolated = run_platformio(kit, jobs)
    sources = check_our_compiles(log)
    undefined = check_undefined(kit, log)
    abis = check_float_abi(link_command(log))
    vfp = check_feature_code_fpu(feature_objects())
    for name in ("firmware.elf", "firmware.map"):  # kept beside size.json, which they explain
        shutil.copy2(build_dir() / name, OUT_DIR / name)
    try:
        report = size_report(OUT_DIR / "firmware.elf", OUT_DIR / "firmware.map", toolchain())
    except SizeError as error:
        raise BoardBuildError(str(error)) from None
    (OUT_DIR / "size.json").write_text(json.dumps(report, indent=2) + "\n")
    return {"log": str(log), "network_isolated": isolated, "our_sources": sources, "undefined_symbols": len(undefined),
            "softfp_objects": sum(abis.values()), "feature_vfp_instructions": vfp, "size": report}


def print_offline(summary: dict) -> None:
    report = summary["size"]
    print(f"offline board build: linked ({'no network' if summary['network_isolated'] else 'network not cut off'}); "
          f"{len(summary['our_sources'])} sources of ours with -Wall, no warnings; {summary['softfp_objects']} "
          f"objects softfp; {summary['undefined_symbols']} undefined symbols, all declared by Mbed OS")
    counts = summary["feature_vfp_instructions"]
    print("feature code on the FPU, no soft-float calls: "
          + ", ".join(f"{name} {count} VFP instructions" for name, count in counts.items()))
    print(f"{'component':16} {'flash':>9} {'RAM':>9}")
    for name, footprint in report["components"].items():
        print(f"{name:16} {footprint['flash']:>9,} {footprint['ram']:>9,}")
    total, mbed, whole = report["total_without_mbed_os"], report["mbed_os_published"], report["whole_firmware_estimate"]
    print(f"{'total (no Mbed)':16} {total['flash']:>9,} {total['ram']:>9,}")
    print(f"{'Mbed OS (publ.)':16} {mbed['flash_bytes']:>9,} {mbed['ram_bytes']:>9,}  ({mbed['source']})")
    print(f"{'whole (estim.)':16} {whole['flash']:>9,} {whole['ram']:>9,}   -> {OUT_DIR / 'size.json'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("offline", "qemu"))
    parser.add_argument("--kit", type=Path, default=DEFAULT_KIT, help=f"the offline PlatformIO kit ({DEFAULT_KIT})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compilations")
    parser.add_argument("--data", type=Path, help="qemu: the shared data folder (default $KWS_SHARED_DATA, "
                        "else ../shared/data)")
    parser.add_argument("--clips", type=int, help="qemu: check this many test-split clips, spread evenly (default all)")
    args = parser.parse_args(argv)
    try:
        if args.step == "offline":
            print_offline(offline(args.kit, args.jobs))
        else:
            from host_tools import board_benchmark

            board_benchmark.print_benchmark(board_benchmark.benchmark(require_kit(args.kit), args.jobs, args.data,
                                                                      args.clips))
    except (BoardBuildError, FirmwareBuildError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # main() of the imported module, so that its errors are the classes board_benchmark raises
    from host_tools.board_build import main as module_main

    sys.exit(module_main())
