"""The firmware's portable core (firmware/lib/kws_core) built for the host, and driven with ctypes.

    core = load_core()                       # compiles once into build/host_core/<hash>/, then reuses it
    frames, window = core_model_input(core, int16_samples)

Also the pieces the host tools share: the generated settings (kws_settings.h) as a dict, the exported
model read back from kws_model_data.cc, and the Cortex-M4F cross-compilation of the core and kissfft.

Only the real sources are compiled; the one generated file is a probe of struct sizes, so callers
allocate the core's objects with the size the C compiler gives them, and the ctypes mirrors of the
public structs are checked against it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from itertools import cycle
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"
CORE_DIR = FIRMWARE_DIR / "lib" / "kws_core"
CORE_SOURCES = sorted((CORE_DIR / "src").glob("*.c"))
CORE_HEADERS = sorted((CORE_DIR / "include").glob("*.h"))
# Another run's exported sources (training.train --firmware-dir DIR: DIR/src/generated) build a core for
# that model instead of the repository's: how the benchmark runs its wakeword model through the pipeline.
GENERATED_DIR = Path(os.environ.get("KWS_GENERATED_DIR", FIRMWARE_DIR / "src" / "generated"))
HOST_CORE_CACHE = REPO_ROOT / "build" / "host_core"
KISSFFT_HEADERS = Path("/usr/include/kissfft")
# Pinned kissfft sources for the ARM build (fetched by `make kissfft`).
KISSFFT_SOURCE_DIR = Path(os.environ.get("KWS_KISSFFT_SRC", REPO_ROOT / "build" / "kissfft" / "kissfft-131.1.0"))
KISSFFT_SOURCES = ("kiss_fft.c", "kiss_fftr.c")
# ISO C11 also means -ffp-contract=off: no fused multiply-adds, so host and ARM round alike.
C_STANDARD = "-std=c11"
C_FLAGS = [C_STANDARD, "-Wall", "-Wextra", "-Werror", "-pedantic"]
INCLUDES = ["-I", str(CORE_DIR / "include"), "-I", str(GENERATED_DIR)]
HOST_FLAGS = ["-O2", "-shared", "-fPIC"]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os"]

OPAQUE_TYPES = ("kws_audio_ring", "kws_feature_provider", "kws_recognizer", "kws_pipeline")


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
                          "(firmware/lib/kws_core/tools/fetch_kissfft.py), or set KWS_KISSFFT_SRC")
    return KISSFFT_SOURCE_DIR


def compile_checked(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise FirmwareBuildError(f"{' '.join(command)}\n{result.stdout}{result.stderr}")


def settings() -> dict:
    """The numeric, string and label #defines of the generated kws_settings.h."""
    path = GENERATED_DIR / "kws_settings.h"
    if not path.is_file():
        raise FirmwareBuildError(f"{path} not found: export a model with `make train` (training/export.py)")
    text = path.read_text()
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


def app_setting(name: str) -> int:
    """A numeric default of the device application's firmware/src/app_config.h."""
    text = (FIRMWARE_DIR / "src" / "app_config.h").read_text()
    return int(re.search(rf"#define {name} (\d+)", text).group(1))


def exported_model() -> bytes:
    """The model the firmware is built with, read back from the generated kws_model_data.cc."""
    path = GENERATED_DIR / "kws_model_data.cc"
    text = path.read_text()
    body = text[text.index("g_kws_model[] = {") : text.index("};")]
    model = bytes(int(byte, 16) for byte in re.findall(r"0x([0-9a-f]{2})", body))
    digest = hashlib.sha256(model).hexdigest()
    if digest != SETTINGS["KWS_MODEL_SHA256"]:
        raise FirmwareBuildError(f"{path} has SHA-256 {digest}, kws_settings.h says {SETTINGS['KWS_MODEL_SHA256']}: "
                                 "re-export both with training/export.py")
    return model


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


# kws_pipeline_platform's callbacks: invoke(context, features, scores), now_ms/now_us(context), send(context, line).
INVOKE = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int8))
CLOCK = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
SEND = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class PipelinePlatform(ctypes.Structure):
    _fields_ = [("invoke", INVOKE), ("now_ms", CLOCK), ("now_us", CLOCK), ("send", SEND), ("context", ctypes.c_void_p)]


class PipelineConfig(ctypes.Structure):
    _fields_ = [("recognizer", RecognizerConfig), ("inference_every_hops", ctypes.c_uint32),
                ("stat_period_ms", ctypes.c_uint32)]


MIRRORS = {"kws_feature_window": FeatureWindow, "kws_recognizer_config": RecognizerConfig,
           "kws_recognition": Recognition, "kws_stats_record": StatsRecord,
           "kws_pipeline_platform": PipelinePlatform, "kws_pipeline_config": PipelineConfig}


def _size_probe() -> str:
    headers = "".join(f'#include "{p.stem}.h"\n' for p in CORE_SOURCES)
    sizes = "".join(f"const size_t sizeof_{t} = sizeof({t});\n" for t in (*OPAQUE_TYPES, *MIRRORS))
    # where the pipeline's ring buffer is, for the host to write audio into it as the PDM interrupt does
    ring = "const size_t offsetof_kws_pipeline_ring = offsetof(kws_pipeline, ring);\n"
    return f"#include <stddef.h>\n{headers}{sizes}{ring}"


class Core:
    """The host build of the core, with the argument types of every public function."""

    def __init__(self, library: Path):
        self.library = library
        self.lib = lib = ctypes.CDLL(str(library))
        self.sizes = {t: ctypes.c_size_t.in_dll(lib, f"sizeof_{t}").value for t in (*OPAQUE_TYPES, *MIRRORS)}
        self.pipeline_ring_offset = ctypes.c_size_t.in_dll(lib, "offsetof_kws_pipeline_ring").value
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
            "kws_pipeline_init": (status, [p, i16p, size, ctypes.POINTER(PipelineConfig), ctypes.POINTER(PipelinePlatform),
                                           ctypes.POINTER(ctypes.c_char_p)]),
            "kws_pipeline_step": (ctypes.c_bool, [p]),
            "kws_pipeline_send_error": (None, [p, ctypes.c_int, ctypes.c_char_p]),
            "kws_pipeline_send_stats": (None, [p]),
        }
        for name, (restype, argtypes) in signatures.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name.removeprefix("kws_"), function)
        for name, mirror in MIRRORS.items():
            if ctypes.sizeof(mirror) != self.sizes[name]:
                raise FirmwareBuildError(f"the ctypes mirror of {name} is {ctypes.sizeof(mirror)} bytes, the C struct "
                                         f"{self.sizes[name]}: update host_tools/firmware_core.py to the header")

    def new(self, type_name: str):
        """Zeroed storage for one instance of an opaque core type, sized by the C compiler."""
        return ctypes.create_string_buffer(self.sizes[type_name])


def _build_key(gcc: str) -> str:
    """Hash of everything the host library depends on: sources, headers, generated files, flags, compiler."""
    digest = hashlib.sha256()
    for path in (*CORE_SOURCES, *CORE_HEADERS, *sorted(GENERATED_DIR.glob("*.h"))):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    digest.update(" ".join([*C_FLAGS, *HOST_FLAGS, version]).encode())
    return digest.hexdigest()[:16]


def build_host_core(out_dir: Path | None = None) -> Path:
    """Compile the core with the host gcc into a shared library; returns its path.

    Without `out_dir` it goes to build/host_core/<hash of inputs>/, and an existing build is reused.
    """
    gcc = find_tool("gcc", "gcc")
    require_kissfft_headers()
    out = Path(out_dir) if out_dir is not None else HOST_CORE_CACHE / _build_key(gcc)
    library = out / "libkws_core.so"
    if out_dir is None and library.is_file():
        return library
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        probe = Path(scratch) / "size_probe.c"
        probe.write_text(_size_probe())
        built = Path(scratch) / library.name
        compile_checked([gcc, *C_FLAGS, *HOST_FLAGS, *INCLUDES, "-I", str(KISSFFT_HEADERS),
                         *map(str, CORE_SOURCES), str(probe), "-o", str(built), "-lkissfft-float", "-lm"])
        built.replace(library)  # atomic: a concurrent user never loads a half-written library
    return library


def load_core(out_dir: Path | None = None) -> Core:
    return Core(build_host_core(out_dir))


def int16_pointer(samples: np.ndarray):
    return samples.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))


def float_pointer(values: np.ndarray):
    return values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


RING_CAPACITY = 1024
WRITE_SIZES, READ_SIZES = (97, 211, 331, 17, 503), (173, 59, 401)  # odd, and never a hop


def stream_features(core: Core, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Feature frames of int16 `samples`, written to and read from the ring buffer in odd chunks."""
    samples = np.ascontiguousarray(samples, np.int16)
    ring, storage = core.new("kws_audio_ring"), np.zeros(RING_CAPACITY, np.int16)
    if core.audio_ring_init(ring, int16_pointer(storage), RING_CAPACITY) != 0:
        raise FirmwareBuildError("kws_audio_ring_init refused the ring buffer")
    provider = core.new("kws_feature_provider")
    if core.feature_provider_init(provider) != 0:
        raise FirmwareBuildError("kws_feature_provider_init failed (kissfft state buffer)")
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


def window_of(core: Core, frames: np.ndarray) -> np.ndarray:
    """The int8 model input the C feature window holds after `frames` were pushed, (frames, mfcc)."""
    window = FeatureWindow()
    core.feature_window_init(ctypes.byref(window))
    for frame in np.ascontiguousarray(frames, np.float32):
        core.feature_window_push(ctypes.byref(window), float_pointer(frame))
    return np.frombuffer(window.data, np.int8).reshape(SETTINGS["KWS_FRAME_COUNT"], SETTINGS["KWS_MFCC_COUNT"]).copy()


def core_model_input(core: Core, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the device feeds the model for one clip: (float frames, int8 window of the last frames)."""
    frames, overruns = stream_features(core, samples)
    if overruns:
        raise FirmwareBuildError(f"the ring buffer dropped {overruns} blocks of a clip streamed on the host")
    return frames, window_of(core, frames)


def default_pipeline_config(core: Core) -> PipelineConfig:
    """What main.cpp passes: the recognizer's exported defaults and app_config.h's cadence and STAT period."""
    return PipelineConfig(core.recognizer_default_config(), app_setting("KWS_INFERENCE_EVERY_HOPS"),
                          app_setting("KWS_STAT_PERIOD_MS"))


class Pipeline:
    """The core's kws_pipeline driven from Python: `write` is the PDM interrupt, `step` one pass of the
    board's loop. The callbacks are the platform's (kws_pipeline_platform, without the context):
    invoke(features, scores) -> bool on int8 pointers, now_ms() and now_us() -> int, send(line: bytes).
    ctypes would print and swallow an exception raised in a callback; here it is raised again by the
    call that ran the callback (the constructor, which sends BOOT, or `step`)."""

    def __init__(self, core: Core, invoke, now_ms, now_us, send, config: PipelineConfig | None = None):
        self.core, self.error = core, None
        self.state = core.new("kws_pipeline")
        self.ring = ctypes.addressof(self.state) + core.pipeline_ring_offset
        self.storage = np.zeros(app_setting("KWS_AUDIO_RING_SAMPLES"), np.int16)
        # kept referenced: the C side holds pointers to these thunks
        self.platform = PipelinePlatform(INVOKE(self._guard(invoke, False)), CLOCK(self._guard(now_ms, 0)),
                                         CLOCK(self._guard(now_us, 0)), SEND(self._guard(send, None)), None)
        message = ctypes.c_char_p()
        status = core.pipeline_init(self.state, int16_pointer(self.storage), len(self.storage),
                                    ctypes.byref(config or default_pipeline_config(core)), ctypes.byref(self.platform),
                                    ctypes.byref(message))
        self._raise_callback_error()
        if status != 0:
            raise FirmwareBuildError(f"kws_pipeline_init failed (status {status}): {message.value.decode()}")

    def _guard(self, function, on_error):
        def call(_context, *args):
            try:
                return function(*args)
            except BaseException as error:  # noqa: B036  (re-raised in Python by _raise_callback_error)
                self.error = self.error or error
                return on_error
        return call

    def _raise_callback_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def write(self, samples: np.ndarray) -> bool:
        """One microphone block into the ring; False when it did not fit (an overrun)."""
        return self.core.audio_ring_write(self.ring, int16_pointer(samples), len(samples))

    def send_stats(self) -> None:
        """A STAT record for the time since the last one: the end of the stream."""
        self.core.pipeline_send_stats(self.state)
        self._raise_callback_error()

    def step(self) -> bool:
        """One pass of the loop; True when it sent a detection."""
        detected = self.core.pipeline_step(self.state)
        self._raise_callback_error()
        return detected


# Cortex-M4F ----------------------------------------------------------------------------------------

def arm_size(objects) -> dict[str, tuple[int, int, int]]:
    """(text, data, bss) of each object or ELF file, by file name (arm-none-eabi-size)."""
    size = find_tool("arm-none-eabi-size", "binutils-arm-none-eabi")
    result = subprocess.run([size, *map(str, objects)], capture_output=True, text=True)
    if result.returncode != 0:
        raise FirmwareBuildError(f"arm-none-eabi-size failed: {result.stderr}")
    return {Path(row.split()[-1]).name: tuple(map(int, row.split()[:3])) for row in result.stdout.splitlines()[1:]}


def cross_compile_core(out_dir: Path) -> list[Path]:
    """Every core unit compiled for the Nano 33 BLE Sense's Cortex-M4F; returns the objects."""
    arm_gcc = find_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    require_kissfft_headers()  # the headers are portable: the same 131.1.0 as the pinned sources
    objects = []
    for source in CORE_SOURCES:
        objects.append(Path(out_dir) / f"{source.stem}.o")
        compile_checked([arm_gcc, *C_FLAGS, *ARM_FLAGS, *INCLUDES, "-I", str(KISSFFT_HEADERS),
                         "-c", str(source), "-o", str(objects[-1])])
    return objects


def cross_compile_kissfft(out_dir: Path) -> list[Path]:
    """The pinned kissfft sources for Cortex-M4F (third-party code: without our -Wextra -pedantic)."""
    arm_gcc = find_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    source_dir = require_kissfft_sources()
    objects = [Path(out_dir) / name.replace(".c", ".o") for name in KISSFFT_SOURCES]
    for name, obj in zip(KISSFFT_SOURCES, objects):
        compile_checked([arm_gcc, C_STANDARD, *ARM_FLAGS, "-Wall", "-Werror", "-I", str(source_dir),
                         "-c", str(source_dir / name), "-o", str(obj)])
    return objects
