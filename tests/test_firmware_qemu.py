"""The board's TFLM (the kit's library with its CMSIS-NN kernels, the board's compiler flags) with our unchanged
model_runner.cpp, kws_core and the exported model, on Cortex-M4F under QEMU (`make firmware-qemu`): bit-exact with
TFLM's Python runtime on real feature windows, main.cpp's loop printing what host_tools/simulate.py prints on a
real audio stream, and the measured instructions, duty cycle and smallest arena in build/firmware/benchmark.json.

The TFLM library is compiled once per hash of its sources and flags (build/tflm-m4/; cold: several minutes)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import missing, require_tool, run_module
from host_tools import board_benchmark, board_build, board_qemu
from host_tools.c_build import ToolMissing, require_kissfft_sources
from training.artifact import load_artifact


@pytest.fixture(scope="module")
def kit(shared_data) -> Path:
    require_tool("arm-none-eabi-g++", "gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    require_tool("qemu-system-arm", "qemu-system-arm")
    try:
        require_kissfft_sources()
        return board_build.require_kit(Path(os.environ.get("KWS_PLATFORMIO_KIT", board_build.DEFAULT_KIT)))
    except (ToolMissing, board_build.BoardBuildError) as error:
        missing(str(error))


@pytest.fixture(scope="module")
def report(kit, shared_data) -> dict:
    """`python -m host_tools.board_build qemu`, as `make firmware-qemu` runs it (it fails unless bit-exact and
    equal to simulate.py), and the benchmark.json it wrote."""
    result = run_module("host_tools.board_build", "qemu", "--kit", kit, "--data", shared_data, timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout)
    return json.loads((board_build.OUT_DIR / "benchmark.json").read_text())


def test_board_tflm_is_bit_exact_with_the_python_runtime_on_real_windows(report):
    exact = report["bit_exact_with_python_tflm"]
    assert exact["windows"] >= 300 and exact["identical"] == exact["windows"]


def test_the_device_loop_prints_what_the_simulator_prints(report):
    stream = report["stream_against_simulate"]
    assert stream["equal_to_simulate"], stream["first_difference"]
    assert stream["detections"] >= 5 and stream["overruns"] == 0
    assert stream["inferences"] == pytest.approx(stream["audio_s"] * 5, abs=6)  # every 10 hops once the window is full


def test_records_that_differ_are_reported(kit, shared_data):
    """The comparison can fail: a stream with one recognizer setting changed on the host side differs."""
    artifact = load_artifact()
    samples = board_benchmark.stream_audio(artifact, shared_data)[: 16000 * 12]
    programs = board_qemu.build_programs(kit, os.cpu_count() or 1)
    on_m4, _ = board_qemu.run_stream(programs, samples)
    simulated = board_benchmark.simulated_records(artifact, samples)
    assert board_benchmark.first_difference(list(map(board_benchmark.without_durations, on_m4)),
                                            list(map(board_benchmark.without_durations, simulated))) is None
    changed = [record.replace("threshold=", "threshold=9") for record in simulated]
    assert "record 0" in board_benchmark.first_difference(on_m4, changed)


def test_instructions_and_duty_cycle_leave_room_at_the_shipped_cadence(report):
    inference, hop, duty = report["instructions_per_inference"], report["instructions_per_hop"], report["duty_cycle"]
    assert 1_000_000 < inference["min"] <= inference["mean"] <= inference["max"] < 50_000_000
    assert 10_000 < hop["total"] < 500_000 and hop["pdm_ring_write"] > 0
    every = load_artifact().manifest.app.inference_every_hops
    assert duty["inference_every_hops"] == every
    assert duty["worst"] == pytest.approx((hop["total"] + inference["max"] / every) / duty["hop_cycles"], abs=1e-3)
    assert duty["worst"] < 0.8, "under 20% left for interrupts and Mbed OS: raise app.inference_every_hops"
    power = report["power_estimate"]
    assert "ESTIMATE" in power["label"] and power["sources"]["cpu"] and power["sources"]["microphone"]
    assert 0 < power["total_mw"] < 20


def test_the_shipped_arena_covers_the_measured_cortex_m4_minimum(report):
    arena = report["arena"]
    assert arena["cortex_m4_used_bytes"] <= arena["cortex_m4_min_bytes"] < arena["cortex_m4_used_bytes"] + 16
    assert arena["shipped_bytes"] >= arena["cortex_m4_min_bytes"]


def test_the_tflm_build_is_cached(kit, report):
    flags = board_qemu.board_flags(kit)
    library = board_qemu.tflm_library(kit, flags, 1) / "libtflm.a"
    built = library.stat().st_mtime_ns
    assert board_qemu.tflm_library(kit, flags, 1) / "libtflm.a" == library and library.stat().st_mtime_ns == built
    assert "-mfloat-abi=softfp" in flags["cxx"] and "-ffp-contract=off" in flags["cxx"]
    assert "-DARDUINO=10810" in flags["cxx"]  # TFLM's sources take their Arduino paths, as on the board
