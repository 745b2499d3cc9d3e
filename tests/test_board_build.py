"""The board firmware built offline from the pinned PlatformIO kit (`make firmware-offline`): it links with only
Mbed OS's symbols undefined, a missing symbol of ours fails the check, every object has the core's float ABI,
the feature code runs on the FPU, and size.json accounts for every byte of the image.

The PlatformIO build runs once per session (cold: several minutes; PlatformIO keeps it under build/pio/)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, missing, require_tool, run_module
from host_tools import board_build
from host_tools.c_build import CORE_DIR, ToolMissing, require_kissfft_sources
from training.artifact import load_artifact

ARM_GCC_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"


def kit() -> Path:
    """The offline PlatformIO kit, or skip (fail in strict mode) saying where it should be."""
    try:
        return board_build.require_kit(Path(os.environ.get("KWS_PLATFORMIO_KIT", board_build.DEFAULT_KIT)))
    except board_build.BoardBuildError as error:
        missing(f"{error} (the tests read KWS_PLATFORMIO_KIT)")


def require_board_toolchain() -> str:
    """arm-none-eabi-gcc, the pinned kissfft sources and PlatformIO with SCons, or skip naming what to install."""
    gcc = require_tool("arm-none-eabi-gcc", ARM_GCC_PACKAGES)
    try:
        require_kissfft_sources()
        board_build.venv_tool("pio")
    except (ToolMissing, board_build.BoardBuildError) as error:
        missing(str(error))
    if importlib.util.find_spec("SCons") is None:  # the kit runs PlatformIO's builds with pip's SCons
        missing("SCons not importable: `make venv` installs it (the `firmware` extra)")
    return gcc


@pytest.fixture(scope="module")
def offline() -> dict:
    """`python -m host_tools.board_build offline`, as `make firmware-offline` runs it, and what it wrote."""
    require_board_toolchain()
    result = run_module("host_tools.board_build", "offline", "--kit", kit(), timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return {"stdout": result.stdout, "log": board_build.OUT_DIR / "pio-run.log",
            "size": json.loads((board_build.OUT_DIR / "size.json").read_text())}


def test_the_board_links_with_only_mbed_os_symbols_undefined(offline):
    symbols = board_build.check_undefined(kit(), offline["log"])
    print(f"\n{len(symbols)} undefined symbols, all declared by Mbed OS; e.g. {symbols[:3]}")
    # main() and the PDM handler are kept (board_build.MBED_OS_CALLS), so our code's references are seen too
    assert len(symbols) > 50 and any(s.startswith("mbed::") for s in symbols)
    assert not [s for s in symbols if s.startswith(("kws_", "model_runner", "tflite", "kiss_fft"))]
    assert "multiple definition" not in offline["log"].read_text()
    if board_build.without_network():
        assert "linked (no network)" in offline["stdout"]


def test_a_missing_symbol_of_ours_fails_the_link_check(offline, tmp_path):
    """A function of ours calling one nobody defines, linked with PlatformIO's own link command."""
    gcc = require_tool("arm-none-eabi-gcc", ARM_GCC_PACKAGES)
    probe = tmp_path / "probe.c"
    probe.write_text("void kws_deliberately_missing(void);\nvoid kws_probe(void) { kws_deliberately_missing(); }\n")
    subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16", "-ffunction-sections",
                    "-c", str(probe), "-o", str(tmp_path / "probe.o")], check=True)
    command = board_build.link_command(offline["log"])
    clean = board_build.relink(command, tmp_path / "clean", [])
    assert len(board_build.check_undefined(kit(), clean)) > 50  # the same link without the probe passes
    broken = board_build.relink(command, tmp_path / "broken", [str(tmp_path / "probe.o"), "-Wl,--undefined=kws_probe"])
    with pytest.raises(board_build.BoardBuildError, match="kws_deliberately_missing"):
        board_build.check_undefined(kit(), broken)


def test_our_sources_compile_with_wall_and_a_warning_fails_the_build(offline, tmp_path):
    sources = board_build.check_our_compiles(offline["log"])
    expected = {f"lib/kws_core/src/{p.name}" for p in (CORE_DIR / "src").glob("*.c")}
    assert expected <= set(sources) and "src/main.cpp" in sources and "src/model_runner.cpp" in sources
    warned = tmp_path / "pio-run.log"
    warning = "src/main.cpp:12:5: warning: unused variable 'x' [-Wunused-variable]\n"
    warned.write_text(offline["log"].read_text() + warning)
    with pytest.raises(board_build.BoardBuildError, match="src/main.cpp:12:5: warning"):
        board_build.check_our_compiles(warned)


def test_every_object_has_the_float_abi_of_the_arduino_core(offline, tmp_path):
    counts = board_build.check_float_abi(board_build.link_command(offline["log"]))
    assert counts["libChirale_TensorFLowLite.a"] > 150
    assert counts["libkws_core.a"] == len(list((CORE_DIR / "src").glob("*.c")))
    assert counts["libcc_310_core.a"] > 10  # Arduino's precompiled core libraries: the reference
    gcc = require_tool("arm-none-eabi-gcc", ARM_GCC_PACKAGES)
    source = tmp_path / "f.c"
    source.write_text("float scale(float x) { return x * 3.0f; }\n")
    for abi in ("hard", "softfp", "soft"):  # the detection tells all three apart
        subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", f"-mfloat-abi={abi}", "-mfpu=fpv4-sp-d16", "-c", str(source),
                        "-o", str(tmp_path / f"{abi}.o")], check=True)
        assert board_build.float_abi([tmp_path / f"{abi}.o"]) == {str(tmp_path / f"{abi}.o"): abi}


def test_feature_code_runs_on_the_fpu(offline, tmp_path):
    counts = board_build.check_feature_code_fpu(board_build.feature_objects())
    print(f"\nVFP instructions: {counts}")
    assert all(count > 10 for count in counts.values())
    # the same source compiled as the builder used to (-mfloat-abi=soft) fails the check
    gcc = require_tool("arm-none-eabi-gcc", ARM_GCC_PACKAGES)
    soft = tmp_path / "feature_provider.c.o"
    subprocess.run([gcc, "-std=c11", "-Os", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft", "-ffunction-sections",
                    "-I", str(CORE_DIR / "include"), "-I", str(REPO_ROOT / "firmware" / "src" / "generated"),
                    "-I", str(require_kissfft_sources()), "-c", str(CORE_DIR / "src" / "feature_provider.c"),
                    "-o", str(soft)], check=True)
    with pytest.raises(board_build.BoardBuildError, match=r"kws_feature_provider_consume calls __aeabi_f"):
        board_build.check_feature_code_fpu([soft])


def test_kws_core_declares_its_kissfft_dependency(offline):
    """kws_core's library.json turns PlatformIO's header search off (libLDFMode off): kissfft reaches it only
    through its declared dependency, which the dependency graph shows."""
    manifest = json.loads((CORE_DIR / "library.json").read_text())
    assert manifest["build"]["libLDFMode"] == "off"
    assert {"name": "kissfft", "version": "131.1.0"} in manifest["dependencies"]
    graph = offline["log"].read_text().split("Dependency Graph", 1)[1].split("Building in", 1)[0]
    assert re.search(r"^\|-- kws_core @ \S+.*\n\|   \|-- kissfft @ 131\.1\.0", graph, re.M), graph


def test_size_json_accounts_for_every_byte(offline):
    size = offline["size"]
    components = size["components"]
    sections = dict(re.findall(r"^(\.\S+)\s+(\d+)\s+\d+$", subprocess.run(
        [require_tool("arm-none-eabi-size", "binutils-arm-none-eabi"), "-A", str(board_build.OUT_DIR / "firmware.elf")],
        capture_output=True, text=True, check=True).stdout, re.M))
    flash = int(sections[".text"]) + int(sections[".ARM.exidx"]) + int(sections[".data"])
    assert size["total_without_mbed_os"] == {"flash": flash, "ram": int(sections[".data"]) + int(sections[".bss"])}
    assert sum(c["flash"] for c in components.values()) == flash
    artifact = load_artifact()
    app = artifact.manifest.app
    assert components["model"]["flash"] == len(artifact.model)
    assert components["arena"]["ram"] == artifact.manifest.arena_bytes + app.arena_margin_bytes
    assert components["ring"]["ram"] == 2 * app.audio_ring_samples
    for name in ("tflm", "core", "kissfft", "application", "c_cpp_runtime", "arduino_core"):
        assert components[name]["flash"] > 0, name
    assert "unattributed" not in components and "mbed_os" not in components  # libmbed.a is the empty stand-in
    assert size["mbed_os_published"]["source"] and size["mbed_os_published"]["flash_bytes"] > 0
    assert size["whole_firmware_estimate"]["flash"] < size["board"]["application_flash_bytes"]
