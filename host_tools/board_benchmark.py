"""The firmware on Cortex-M4F under QEMU, checked against the host and measured (make firmware-qemu).

    report = benchmark(kit, jobs, data_dir)      # writes build/firmware/benchmark.json

1. Real feature windows (test-split clips of the mini Speech Commands set, features by the host build of the
   core) through the board's TFLM and model_runner.cpp: the int8 scores must equal TFLM's Python runtime's.
2. A real audio stream through main.cpp's loop (kws_pipeline) and through host_tools/simulate.py: the same
   records, apart from the durations (fields ending in _us), which are each side's own clock.
3. Instructions per inference and per 20 ms hop (QEMU -icount), the duty cycle at 64 MHz for the shipped
   cadence, an average power estimate, and the smallest arena on Cortex-M4.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from host_tools import board_qemu
from host_tools.board_build import OUT_DIR, REPO_ROOT, BoardBuildError, model_artifact
from training.artifact import Artifact

CLOCK_HZ = 64_000_000  # nRF52840
# Datasheet currents for the power estimate (typical values, not measured here).
SUPPLY_V = 3.3  # the board's regulated rail
CPU_RUN_MA = 3.3  # nRF52840 Product Specification v1.7, "CPU running": CoreMark at 64 MHz from flash, cache on, DC/DC
MICROPHONE_MA = 0.65  # ST MP34DT05-A datasheet (the BLE Sense Rev1's microphone), Idd in normal mode
MINI_SET = "speech_commands_v0.02_mini"
STREAM_CLIPS = 40  # test-split clips, spread over the keywords: 4 of each of kws12's 10, 40 of a wake word's one
STREAM_PAUSE_S = 0.5


def shared_data(data_dir: Path | None = None) -> Path:
    path = Path(data_dir or os.environ.get("KWS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (path / MINI_SET / "testing_list.txt").is_file():
        raise BoardBuildError(f"real audio not found: {path / MINI_SET / 'testing_list.txt'} is missing; set "
                              "KWS_SHARED_DATA (or --data) to the shared data folder")
    return path


def testing_split(data_dir: Path, limit: int | None = None) -> list[Path]:
    """The test split of the mini set (its testing_list.txt), in list order; `limit` spreads them evenly."""
    root = data_dir / MINI_SET
    paths = [root / line.strip() for line in (root / "testing_list.txt").read_text().splitlines() if line.strip()]
    if limit is not None and limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths


def feature_windows(artifact: Artifact, paths: list[Path]) -> np.ndarray:
    """The int8 window the device would feed the model at the end of each clip (host build of the core)."""
    from host_tools.core import core_model_input, load_core
    from training.data import read_audio, to_int16

    core = load_core(artifact)
    rate = artifact.manifest.features.sample_rate
    return np.stack([core_model_input(core, to_int16(read_audio(path, rate)))[1] for path in paths])


def reference_scores(artifact: Artifact, windows: np.ndarray) -> np.ndarray:
    """TFLM's Python runtime (x86-64, reference kernels) on the same windows."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    interpreter = tflm.Interpreter.from_bytes(artifact.model, arena_size=artifact.manifest.arena_bytes)
    scores = []
    for window in windows:
        interpreter.set_input(window.reshape(artifact.manifest.input.shape), 0)
        interpreter.invoke()
        scores.append(np.asarray(interpreter.get_output(0), np.int8).reshape(-1))
    return np.stack(scores)


def stream_audio(artifact: Artifact, data_dir: Path) -> np.ndarray:
    """int16 audio: the first STREAM_CLIPS / len(keywords) test-split clips of each keyword (in a row, as a command
    repeated by several speakers), each followed by a pause."""
    from training.data import read_audio, to_int16

    rate = artifact.manifest.features.sample_rate
    by_word: dict[str, list[Path]] = {}
    for path in testing_split(data_dir):
        by_word.setdefault(path.parent.name, []).append(path)
    pause = np.zeros(round(STREAM_PAUSE_S * rate), np.int16)
    per_keyword = -(-STREAM_CLIPS // len(artifact.manifest.keywords))
    paths = [path for keyword in artifact.manifest.keywords for path in by_word.get(keyword, [])[:per_keyword]]
    if not paths:
        raise BoardBuildError(f"no test-split clip of the keywords {artifact.manifest.keywords} in "
                              f"{data_dir / MINI_SET}")
    parts = [part for path in paths for part in (to_int16(read_audio(path, rate)), pause)]
    return np.concatenate(parts)


def simulated_records(artifact: Artifact, samples: np.ndarray) -> list[str]:
    """host_tools/simulate.py's output for the same audio, written as a 16-bit WAV (read back sample-exact)."""
    import soundfile

    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "stream.wav"
        soundfile.write(wav, samples, artifact.manifest.features.sample_rate, subtype="PCM_16")
        result = subprocess.run([sys.executable, str(REPO_ROOT / "host_tools" / "simulate.py"), "--gap", "0", str(wav)],
                                cwd=REPO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise BoardBuildError(f"host_tools/simulate.py failed:\n{result.stderr[-3000:]}")
    return [line.rstrip("\r") for line in result.stdout.splitlines() if line.startswith("KWS")]


def without_durations(record: str) -> str:
    """A record without its duration fields (`us`, `*_us`): host and QEMU each time with their own clock."""
    return re.sub(r" (?:\w+_)?us=\d+", "", record)


def cycle_budget(artifact: Artifact, hop_instructions: float, inference_instructions: dict) -> dict:
    """Duty cycle at 64 MHz for the shipped cadence, at one cycle per instruction (a lower bound on cycles)."""
    features, every = artifact.manifest.features, artifact.manifest.app.inference_every_hops
    hop_cycles = CLOCK_HZ * features.hop_samples / features.sample_rate
    mean = (hop_instructions + inference_instructions["mean"] / every) / hop_cycles
    worst = (hop_instructions + inference_instructions["max"] / every) / hop_cycles
    return {"clock_hz": CLOCK_HZ, "inference_every_hops": every, "hop_cycles": round(hop_cycles),
            "mean": round(mean, 4), "worst": round(worst, 4), "margin": round(1 - worst, 4),
            "inference_ms_at_64mhz": round(inference_instructions["max"] / CLOCK_HZ * 1e3, 1),
            "assumption": "one cycle per instruction: a lower bound, since loads, taken branches, VDIV/VSQRT and "
                          "flash wait states on cache misses take more; the margin is what is left for the PDM and "
                          "USB serial interrupts and Mbed OS"}


def power_estimate(duty: float) -> dict:
    """Average power from the duty cycle and datasheet currents: an estimate, not a measurement."""
    cpu_ma, total_ma = duty * CPU_RUN_MA, duty * CPU_RUN_MA + MICROPHONE_MA
    return {"label": "ESTIMATE from datasheet currents, not measured", "supply_v": SUPPLY_V,
            "cpu_ma": round(cpu_ma, 3), "microphone_ma": MICROPHONE_MA, "total_ma": round(total_ma, 3),
            "total_mw": round(total_ma * SUPPLY_V, 2),
            "sources": {"cpu": "nRF52840 Product Specification v1.7, CPU running (CoreMark, 64 MHz, from flash, "
                               f"cache enabled, DC/DC regulator): {CPU_RUN_MA} mA, times the duty cycle",
                        "microphone": "ST MP34DT05-A datasheet, current consumption in normal mode: "
                                      f"{MICROPHONE_MA} mA"},
            "excluded": "the nRF52840's idle current with the clocks PDM needs running, the PDM and USB peripherals, "
                        "the regulator's and LEDs' and other sensors' currents: the board draws more"}


def first_difference(ours: list[str], theirs: list[str]) -> str | None:
    for index in range(max(len(ours), len(theirs))):
        a, b = (ours[index] if index < len(ours) else None), (theirs[index] if index < len(theirs) else None)
        if a != b:
            return f"record {index}: QEMU {a!r}, simulate.py {b!r}"
    return None


def check_scores(artifact: Artifact, programs: dict, data_dir: Path, clips: int | None) -> tuple[dict, dict]:
    """(bit-exactness on real windows, instructions per inference)."""
    windows = feature_windows(artifact, testing_split(data_dir, clips))
    on_m4, counts = board_qemu.infer_windows(programs, windows, len(artifact.manifest.labels))
    identical = int(np.all(on_m4 == reference_scores(artifact, windows), axis=1).sum())
    inferences = {"mean": round(counts["instructions_total"] / counts["inferences"]), "min": counts["instructions_min"],
                  "max": counts["instructions_max"]}
    exactness = {"windows": len(windows), "identical": identical, "clips": f"test split of {data_dir / MINI_SET}"}
    return exactness, inferences


def check_stream(artifact: Artifact, programs: dict, data_dir: Path) -> tuple[dict, dict]:
    """(the loop's records against simulate.py's, instructions per 20 ms hop outside inference)."""
    samples = stream_audio(artifact, data_dir)
    on_m4, counts = board_qemu.run_stream(programs, samples)
    difference = first_difference(list(map(without_durations, on_m4)),
                                  list(map(without_durations, simulated_records(artifact, samples))))
    hops = counts["samples"] / artifact.manifest.features.hop_samples
    detections = sum(bool(re.match(r"KWS\d+ DET ", record)) for record in on_m4)
    stream = {"audio_s": round(counts["samples"] / artifact.manifest.features.sample_rate, 2), "records": len(on_m4),
              "detections": detections, "inferences": counts["inferences"], "equal_to_simulate": difference is None,
              "first_difference": difference, "overruns": counts["overruns"]}
    per_hop = {"pdm_ring_write": round(counts["ring_write"] / hops),
               "loop_without_inference": round((counts["loop"] - counts["inference"]) / hops)}
    per_hop["total"] = per_hop["pdm_ring_write"] + per_hop["loop_without_inference"]
    return stream, per_hop


def benchmark(kit: Path, jobs: int, data_dir: Path | None = None, clips: int | None = None) -> dict:
    """Everything above; writes build/firmware/benchmark.json and returns it."""
    artifact, data_dir = model_artifact(), shared_data(data_dir)
    programs = board_qemu.build_programs(kit, jobs)
    exactness, per_inference = check_scores(artifact, programs, data_dir, clips)
    stream, per_hop = check_stream(artifact, programs, data_dir)
    arena = board_qemu.smallest_arena(programs)
    manifest = artifact.manifest
    budget = cycle_budget(artifact, per_hop["total"], per_inference)
    report = {
        "generated_by": "python -m host_tools.board_build qemu (make firmware-qemu); do not edit",
        "model_sha256": manifest.model_sha256,
        "build": {"flags": board_qemu.board_flags(kit)["cxx"], "tflm": "Chirale_TensorFLowLite 2.0.0 with its CMSIS-NN "
                  "kernels", "machine": "qemu-system-arm -M mps2-an386 (Cortex-M4F) -icount shift=0"},
        "bit_exact_with_python_tflm": exactness,
        "stream_against_simulate": stream,
        "instructions_per_inference": per_inference,
        "instructions_per_hop": per_hop,
        "duty_cycle": budget,
        "power_estimate": power_estimate(budget["mean"]),
        "arena": {"cortex_m4_min_bytes": arena["arena_min"], "cortex_m4_used_bytes": arena["arena_used"],
                  "python_runtime_min_bytes": manifest.arena_bytes,
                  "shipped_bytes": manifest.arena_bytes + manifest.app.arena_margin_bytes,
                  "shipped_headroom_bytes": manifest.arena_bytes + manifest.app.arena_margin_bytes - arena["arena_min"],
                  "tflm_null_writes_while_searching": arena["null_writes"]},
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    failures = [f"{exactness['windows'] - exactness['identical']} of {exactness['windows']} windows differ from "
                "TFLM's Python runtime"] if exactness["identical"] != exactness["windows"] else []
    if not stream["equal_to_simulate"]:
        failures.append(f"the loop's records differ from simulate.py's: {stream['first_difference']}")
    if failures:
        raise BoardBuildError("; ".join(failures) + f" (details: {OUT_DIR / 'benchmark.json'})")
    return report


def print_benchmark(report: dict) -> None:
    exact, stream = report["bit_exact_with_python_tflm"], report["stream_against_simulate"]
    inference, hop, duty = report["instructions_per_inference"], report["instructions_per_hop"], report["duty_cycle"]
    arena, power = report["arena"], report["power_estimate"]
    print(f"Cortex-M4F under QEMU, the board's flags: {exact['identical']}/{exact['windows']} real windows bit-exact "
          f"with TFLM's Python runtime; {stream['audio_s']} s stream: {stream['records']} records "
          f"({stream['detections']} DET), equal to simulate.py's: {stream['equal_to_simulate']}")
    print(f"instructions: {inference['mean']:,} per inference (max {inference['max']:,}); {hop['total']:,} per "
          f"20 ms hop outside inference (PDM ring write {hop['pdm_ring_write']:,})")
    print(f"duty cycle at 64 MHz, one inference every {duty['inference_every_hops']} hops: {duty['mean']:.1%} "
          f"(worst {duty['worst']:.1%}, margin {duty['margin']:.1%}), one cycle per instruction assumed")
    print(f"power ({power['label']}): {power['total_mw']} mW ({power['cpu_ma']} mA CPU + {power['microphone_ma']} mA "
          f"microphone at {power['supply_v']} V)")
    print(f"arena on Cortex-M4: {arena['cortex_m4_min_bytes']:,} B minimum; shipped {arena['shipped_bytes']:,} B "
          f"(headroom {arena['shipped_headroom_bytes']:,} B)   -> {OUT_DIR / 'benchmark.json'}")
