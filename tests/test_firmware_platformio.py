"""The board project: platformio.ini is accepted by PlatformIO (offline) and pins everything, and
the core's headers work from the C++ edge files with the same struct layout as the C build."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, missing, require_tool
from firmware_build import ARTIFACT, core  # noqa: F401  (core is a fixture)
from host_tools.c_build import CORE_DIR, compile_checked, core_includes
from host_tools.core import OPAQUE_TYPES

FIRMWARE = REPO_ROOT / "firmware"


def pio() -> str:
    path = shutil.which("pio", path=str(Path(sys.executable).parent)) or shutil.which("pio")
    if not path:
        missing("pio not found: `make venv` installs PlatformIO (the `firmware` extra: pip install -e '.[firmware]')")
    return path


def test_platformio_accepts_the_project_and_every_dependency_is_pinned(tmp_path):
    env = {**os.environ, "PLATFORMIO_CORE_DIR": str(tmp_path)}  # offline, and no state outside tmp
    result = subprocess.run([pio(), "project", "config", "-d", str(FIRMWARE), "--json-output"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sections = {name: dict(options) for name, options in json.loads(result.stdout)}
    board = sections["env:nano33ble"]
    assert board["board"] == "nano33ble" and board["framework"] == ["arduino"]
    name, version = board["platform"].split("@")
    assert name == "nordicnrf52" and version.count(".") == 2 and version.replace(".", "").isdigit()
    assert any(dep.startswith("spaziochirale/Chirale_TensorFLowLite@") and dep.split("@")[1][0].isdigit()
               for dep in board["lib_deps"])
    kissfft = [dep for dep in board["lib_deps"] if dep.startswith("kissfft=symlink://")]
    assert kissfft, board["lib_deps"]
    assert (FIRMWARE / kissfft[0].removeprefix("kissfft=symlink://")).resolve() == \
        (REPO_ROOT / "build" / "kissfft" / "kissfft-131.1.0").resolve()
    include = next(flag for flag in board["build_flags"] if flag.startswith("-I"))
    assert Path(include[2:]).resolve() == (FIRMWARE / "src" / "generated").resolve()
    assert "-Wl,-u,_printf_float" in board["build_flags"] and "-ffp-contract=off" in board["build_flags"]
    assert board["monitor_speed"] == 115200  # firmware/PROTOCOL.md


def test_library_manifests_build_the_right_sources():
    core_manifest = json.loads((CORE_DIR / "library.json").read_text())
    assert core_manifest["build"]["srcDir"] == "src" and "-std=c11" in core_manifest["build"]["flags"]
    spec = importlib.util.spec_from_file_location("fetch_kissfft", CORE_DIR / "tools" / "fetch_kissfft.py")
    fetch_kissfft = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch_kissfft)
    LIBRARY_JSON = fetch_kissfft.LIBRARY_JSON  # the manifest `make kissfft` writes for the board
    assert LIBRARY_JSON["version"] == "131.1.0"
    assert LIBRARY_JSON["build"]["srcFilter"] == ["-<*>", "+<kiss_fft.c>", "+<kiss_fftr.c>"]


def test_core_headers_compile_as_cpp_with_the_c_layout(core, tmp_path):
    """The edge is C++: every header links as extern "C", and its structs (the ring buffer's atomics
    included) have the size the C compiler gives them."""
    gxx = require_tool("g++", "g++")
    headers = "".join(f'#include "{path.name}"\n' for path in sorted((CORE_DIR / "include").glob("*.h")))
    checks = "".join(f"static_assert(sizeof({t}) == {core.sizes[t]}, \"{t}\");\n" for t in OPAQUE_TYPES)
    probe = tmp_path / "probe.cpp"
    probe.write_text(f"{headers}{checks}extern \"C\" size_t kws_audio_ring_available(kws_audio_ring *);\n"
                     "size_t (*kept)(kws_audio_ring *) = &kws_audio_ring_available;\n")
    compile_checked([gxx, "-std=gnu++14", "-Wall", "-Werror", *core_includes(ARTIFACT),
                     "-c", str(probe), "-o", str(tmp_path / "probe.o")])
    symbols = subprocess.run(["nm", str(tmp_path / "probe.o")], capture_output=True, text=True).stdout
    assert " U kws_audio_ring_available" in symbols  # unmangled: links against the C objects
    arm_gxx = require_tool("arm-none-eabi-g++", "gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    arm_probe = tmp_path / "arm_probe.cpp"
    arm_probe.write_text(headers)  # the board's C++ compiler accepts them too (sizes differ: 32-bit)
    compile_checked([arm_gxx, "-std=gnu++14", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                     "-Wall", "-Werror", *core_includes(ARTIFACT), "-fsyntax-only", str(arm_probe)])
