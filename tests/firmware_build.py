"""Builds the firmware's portable core (firmware/lib/kws_core) for the host and drives it with ctypes.

Only the real sources are compiled; the one generated file is a probe of struct sizes, so the
tests allocate the core's objects with the size the C compiler gives them and check their ctypes
mirrors against it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
from itertools import cycle
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, missing, require_tool

CORE_DIR = REPO_ROOT / "firmware" / "lib" / "kws_core"
CORE_SOURCES = sorted((CORE_DIR / "src").glob("*.c"))
GENERATED_DIR = REPO_ROOT / "firmware" / "src" / "generated"
KISSFFT_HEADERS = Path("/usr/include/kissfft")
# Pinned kissfft sources for the ARM build (fetched by firmware/lib/kws_core/tools/fetch_kissfft.py).
KISSFFT_SOURCE_DIR = Path(os.environ.get("KWS_KISSFFT_SRC", REPO_ROOT / "build" / "kissfft" / "kissfft-131.1.0"))
KISSFFT_SOURCES = ("kiss_fft.c", "kiss_fftr.c")
# ISO C11 also means -ffp-contract=off: no fused multiply-adds, so host and ARM round alike.
C_STANDARD = "-std=c11"
C_FLAGS = [C_STANDARD, "-Wall", "-Wextra", "-Werror", "-pedantic"]
INCLUDES = ["-I", str(CORE_DIR / "include"), "-I", str(GENERATED_DIR)]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os"]

OPAQUE_TYPES = ("kws_audio_ring", "kws_feature_provider", "kws_recognizer")


def settings() -> dict:
    """The numeric, string and label #defines of the generated kws_settings.h."""
    text = (GENERATED_DIR / "kws_settings.h").read_text()
    values: dict = {}
    for name, value in re.findall(r"^#define (KWS_\w+) (.+)$", text, re.MULTILINE):
        value = value.strip()
        if re.fullmatch(r"-?\d+", value):
            values[name] = int(value)
        elif re.fullmatch(r"-?[\d.e+-]+f", value):
            values[name] = float(np.float32(value[:-1]))
        elif value.startswith('"'):
            values[name] = value.strip('"')
    values["KWS_LABELS"] = re.findall(r'"([^"]*)"', re.search(r"#define KWS_LABELS \{(.*)\}", text).group(1))
    return values


SETTINGS = settings()


class RecognizerConfig(ctypes.Structure):
    _fields_ = [("average_window_ms", ctypes.c_uint32), ("detection_threshold", ctypes.c_float),
                ("suppression_ms", ctypes.c_uint32), ("minimum_count", ctypes.c_uint32)]


class Recognition(ctypes.Structure):
    _fields_ = [("detected", ctypes.c_bool), ("label", ctypes.c_int), ("score", ctypes.c_float)]


class StatsRecord(ctypes.Structure):
    _fields_ = [("uptime_ms", ctypes.c_uint32), ("inferences_per_second", ctypes.c_float),
                ("inference_mean_us", ctypes.c_uint32), ("inference_max_us", ctypes.c_uint32),
                ("feature_mean_us", ctypes.c_uint32), ("audio_overruns", ctypes.c_uint32)]


class FeatureWindow(ctypes.Structure):
    _fields_ = [("data", ctypes.c_int8 * (SETTINGS["KWS_FRAME_COUNT"] * SETTINGS["KWS_MFCC_COUNT"])),
                ("frames", ctypes.c_uint32)]


MIRRORS = {"kws_feature_window": FeatureWindow, "kws_recognizer_config": RecognizerConfig,
           "kws_recognition": Recognition, "kws_stats_record": StatsRecord}


def require_kissfft_headers() -> None:
    if not (KISSFFT_HEADERS / "kiss_fftr.h").is_file():
        missing("kissfft headers not found: apt-get install libkissfft-dev")


def require_kissfft_sources() -> Path:
    if not all((KISSFFT_SOURCE_DIR / name).is_file() for name in KISSFFT_SOURCES):
        missing(f"kissfft sources not found in {KISSFFT_SOURCE_DIR}: run "
                "`python firmware/lib/kws_core/tools/fetch_kissfft.py` (or set KWS_KISSFFT_SRC)")
    return KISSFFT_SOURCE_DIR


def compile_checked(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}{result.stderr}"


def _size_probe() -> str:
    headers = "".join(f'#include "{p.stem}.h"\n' for p in CORE_SOURCES)
    sizes = "".join(f"const size_t sizeof_{t} = sizeof({t});\n" for t in (*OPAQUE_TYPES, *MIRRORS))
    return f"#include <stddef.h>\n{headers}{sizes}"


class Core:
    """The host build of the core, with the argument types of every function the tests call."""

    def __init__(self, library: Path):
        self.lib = lib = ctypes.CDLL(str(library))
        self.sizes = {t: ctypes.c_size_t.in_dll(lib, f"sizeof_{t}").value for t in (*OPAQUE_TYPES, *MIRRORS)}
        p, i16p, f32p, i8p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.POINTER(ctypes.c_float), ctypes.c_char_p
        size, u32, status = ctypes.c_size_t, ctypes.c_uint32, ctypes.c_int
        signatures = {
            "kws_audio_ring_init": (status, [p, i16p, size]),
            "kws_audio_ring_write": (ctypes.c_bool, [p, i16p, size]),
            "kws_audio_ring_read": (size, [p, i16p, size]),
            "kws_audio_ring_available": (size, [p]),
            "kws_audio_ring_overruns": (u32, [p]),
            "kws_audio_ring_dropped_samples": (u32, [p]),
            "kws_feature_provider_init": (status, [p]),
            "kws_feature_provider_consume": (size, [p, i16p, size, f32p, ctypes.POINTER(ctypes.c_bool)]),
            "kws_quantize_feature": (ctypes.c_int8, [ctypes.c_float]),
            "kws_feature_window_init": (None, [ctypes.POINTER(FeatureWindow)]),
            "kws_feature_window_push": (None, [ctypes.POINTER(FeatureWindow), f32p]),
            "kws_feature_window_full": (ctypes.c_bool, [ctypes.POINTER(FeatureWindow)]),
            "kws_recognizer_default_config": (RecognizerConfig, []),
            "kws_recognizer_init": (status, [p, ctypes.POINTER(RecognizerConfig)]),
            "kws_recognizer_process": (status, [p, i8p, u32, ctypes.POINTER(Recognition)]),
            "kws_format_boot": (status, [p, size, ctypes.POINTER(RecognizerConfig), ctypes.POINTER(size)]),
            "kws_format_detection": (status, [p, size, u32, ctypes.c_int, ctypes.c_float, u32, ctypes.POINTER(size)]),
            "kws_format_stats": (status, [p, size, ctypes.POINTER(StatsRecord), ctypes.POINTER(size)]),
            "kws_format_error": (status, [p, size, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(size)]),
        }
        for name, (restype, argtypes) in signatures.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name.removeprefix("kws_"), function)

    def new(self, type_name: str):
        """Zeroed storage for one instance of an opaque core type, sized by the C compiler."""
        return ctypes.create_string_buffer(self.sizes[type_name])


_built: dict[str, Core] = {}


@pytest.fixture(scope="session")
def core(tmp_path_factory) -> Core:
    """The core compiled with the host gcc into a shared library (outside the repository)."""
    if "core" not in _built:
        gcc = require_tool("gcc", "gcc")
        require_kissfft_headers()
        out = tmp_path_factory.mktemp("kws_core")
        probe = out / "size_probe.c"
        probe.write_text(_size_probe())
        library = out / "libkws_core.so"
        compile_checked([gcc, *C_FLAGS, "-O2", "-shared", "-fPIC", *INCLUDES, "-I", str(KISSFFT_HEADERS),
                         *map(str, CORE_SOURCES), str(probe), "-o", str(library), "-lkissfft-float", "-lm"])
        _built["core"] = Core(library)
    return _built["core"]


def int16_pointer(samples: np.ndarray):
    return samples.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))


def float_pointer(values: np.ndarray):
    return values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def exported_model() -> bytes:
    """The model the firmware is built with, read back from the generated kws_model_data.cc."""
    text = (GENERATED_DIR / "kws_model_data.cc").read_text()
    body = text[text.index("g_kws_model[] = {") : text.index("};")]
    model = bytes(int(byte, 16) for byte in re.findall(r"0x([0-9a-f]{2})", body))
    assert hashlib.sha256(model).hexdigest() == SETTINGS["KWS_MODEL_SHA256"], "kws_model_data.cc does not match its hash"
    return model


def model_outputs_on_stream(mini_set: Path, hop_frames: int) -> list[tuple[int, np.ndarray]]:
    """(time ms, int8 scores) of the exported model run every `hop_frames` feature frames over a
    stream of real clips: two of each keyword between background noise, as the device would see it."""
    from training.data import read_audio, to_float, to_int16
    from training.features import mfcc, quantize
    from training.quantize import run_litert

    rate = SETTINGS["KWS_SAMPLE_RATE"]
    noise = read_audio(mini_set / "_background_noise_" / "doing_the_dishes.wav", rate) * 0.2
    parts = []
    for i, label in enumerate(label for label in SETTINGS["KWS_LABELS"] if not label.startswith("_")):
        parts += [read_audio(path, rate) for path in sorted((mini_set / label).iterdir())[:2]]
        parts.append(noise[i * rate : (i + 1) * rate])
    features = quantize(mfcc(to_float(to_int16(np.concatenate(parts)))), SETTINGS["KWS_INPUT_SCALE"],
                        SETTINGS["KWS_INPUT_ZERO_POINT"])
    frames, hop_ms = SETTINGS["KWS_FRAME_COUNT"], 1000 * SETTINGS["KWS_HOP_SAMPLES"] // rate
    ends = range(frames, len(features) + 1, hop_frames)
    outputs = run_litert(exported_model(), np.stack([features[end - frames : end] for end in ends]))
    return [(end * hop_ms, scores) for end, scores in zip(ends, outputs)]


RING_CAPACITY = 1024
WRITE_SIZES, READ_SIZES = (97, 211, 331, 17, 503), (173, 59, 401)  # odd, and never a hop


def stream_features(core, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Feature frames of int16 `samples`, written to and read from the ring buffer in odd chunks."""
    ring, storage = core.new("kws_audio_ring"), np.zeros(RING_CAPACITY, np.int16)
    assert core.audio_ring_init(ring, int16_pointer(storage), RING_CAPACITY) == 0
    provider = core.new("kws_feature_provider")
    assert core.feature_provider_init(provider) == 0
    chunk, ready = np.zeros(max(READ_SIZES), np.int16), ctypes.c_bool()
    frame = np.zeros(SETTINGS["KWS_MFCC_COUNT"], np.float32)
    frames, position, write_sizes, read_sizes = [], 0, cycle(WRITE_SIZES), cycle(READ_SIZES)
    while position < len(samples) or core.audio_ring_available(ring):
        block = np.ascontiguousarray(samples[position : position + next(write_sizes)])
        if len(block) and core.audio_ring_write(ring, int16_pointer(block), len(block)):
            position += len(block)
        while core.audio_ring_available(ring):
            count = core.audio_ring_read(ring, int16_pointer(chunk), next(read_sizes))
            done = 0
            while done < count:
                done += core.feature_provider_consume(
                    provider, int16_pointer(chunk[done:]), count - done, float_pointer(frame), ctypes.byref(ready))
                if ready.value:
                    frames.append(frame.copy())
    return np.array(frames).reshape(-1, SETTINGS["KWS_MFCC_COUNT"]), core.audio_ring_overruns(ring)
