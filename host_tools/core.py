"""The firmware's portable core built for the host (host_tools/c_build.py) and driven with ctypes.

    core = load_core(load_artifact(path))     # built once per model artifact, then reused
    frames, window = core_model_input(core, int16_samples)

One process can hold the cores of several models. Each is compiled with a probe of the C struct sizes,
so callers allocate the core's objects with the size the C compiler gives them and the ctypes mirrors
of the public structs are checked against it.
"""
from __future__ import annotations

import ctypes
from itertools import cycle

import numpy as np

from host_tools.c_build import CORE_SOURCES, FirmwareBuildError, build_host_library
from training.artifact import Artifact, Manifest
from training.config import DetectionConfig

OPAQUE_TYPES = ("kws_audio_ring", "kws_feature_provider", "kws_recognizer", "kws_pipeline")


class RecognizerConfig(ctypes.Structure):
    _fields_ = [("average_window_ms", ctypes.c_uint32), ("detection_threshold", ctypes.c_float),
                ("suppression_ms", ctypes.c_uint32), ("minimum_count", ctypes.c_uint32)]

    @classmethod
    def of(cls, detection: DetectionConfig) -> RecognizerConfig:
        return cls(detection.average_window_ms, detection.detection_threshold, detection.suppression_ms,
                   detection.minimum_count)


class Recognition(ctypes.Structure):
    _fields_ = [("detected", ctypes.c_bool), ("label", ctypes.c_int), ("score", ctypes.c_float)]


class StatsRecord(ctypes.Structure):
    _fields_ = [("uptime_ms", ctypes.c_uint32), ("inferences_per_second", ctypes.c_float),
                ("inference_mean_us", ctypes.c_uint32), ("inference_max_us", ctypes.c_uint32),
                ("feature_mean_us", ctypes.c_uint32), ("audio_overruns", ctypes.c_uint32)]


class BootSettings(ctypes.Structure):
    _fields_ = [("recognizer", ctypes.POINTER(RecognizerConfig)), ("inference_every_hops", ctypes.c_uint32),
                ("microphone_gain", ctypes.c_uint32)]


# kws_pipeline_platform's callbacks: invoke(context, features, feature_count, scores, score_count),
# now_ms/now_us(context), send(context, line).
INVOKE = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8), ctypes.c_size_t,
                          ctypes.POINTER(ctypes.c_int8), ctypes.c_size_t)
CLOCK = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)
SEND = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)


class PipelinePlatform(ctypes.Structure):
    _fields_ = [("invoke", INVOKE), ("now_ms", CLOCK), ("now_us", CLOCK), ("send", SEND), ("context", ctypes.c_void_p)]


class PipelineConfig(ctypes.Structure):
    _fields_ = [("recognizer", RecognizerConfig), ("inference_every_hops", ctypes.c_uint32),
                ("stat_period_ms", ctypes.c_uint32), ("microphone_gain", ctypes.c_uint32)]


def feature_window_type(manifest: Manifest) -> type[ctypes.Structure]:
    """kws_feature_window, whose size depends on the model's input."""
    values = manifest.features.n_frames * manifest.features.n_mfcc
    return type("FeatureWindow", (ctypes.Structure,), {"_fields_": [("data", ctypes.c_int8 * values),
                                                                    ("frames", ctypes.c_uint32)]})


MIRRORS = {"kws_recognizer_config": RecognizerConfig, "kws_recognition": Recognition, "kws_stats_record": StatsRecord,
           "kws_boot_settings": BootSettings, "kws_pipeline_platform": PipelinePlatform,
           "kws_pipeline_config": PipelineConfig}
PROBED_TYPES = (*OPAQUE_TYPES, *MIRRORS, "kws_feature_window")
SIZE_PROBE = ("#include <stddef.h>\n" + "".join(f'#include "{p.stem}.h"\n' for p in CORE_SOURCES)
              + "".join(f"const size_t sizeof_{t} = sizeof({t});\n" for t in PROBED_TYPES)
              # where the pipeline's ring buffer is, for the host to write audio into it as the PDM interrupt does
              + "const size_t offsetof_kws_pipeline_ring = offsetof(kws_pipeline, ring);\n")
# The device's recognizer over a recorded run, in one call (a threshold sweep replays it thousands of times):
# kws_recognizer_process itself, in a loop. Returns the detections written, or -1 when a call fails.
REPLAY_SOURCE = """
long host_replay(const kws_recognizer_config *config, const int8_t *scores, const uint32_t *times, size_t count,
                 uint32_t *detection_times, int *detection_labels)
{
    kws_recognizer recognizer;
    kws_recognition result;
    long detections = 0;
    if (kws_recognizer_init(&recognizer, config) != KWS_OK) {
        return -1;
    }
    for (size_t i = 0; i < count; ++i) {
        if (kws_recognizer_process(&recognizer, scores + i * KWS_LABEL_COUNT, times[i], &result) != KWS_OK) {
            return -1;
        }
        if (result.detected) {
            detection_times[detections] = times[i];
            detection_labels[detections++] = result.label;
        }
    }
    return detections;
}
"""


def _signatures(window: type) -> dict:
    p, i16p, f32p, i8p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16), ctypes.POINTER(ctypes.c_float), ctypes.c_char_p
    size, u32, status, sizep = ctypes.c_size_t, ctypes.c_uint32, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)
    return {
        "kws_audio_ring_init": (status, [p, i16p, size]),
        "kws_audio_ring_write": (ctypes.c_bool, [p, i16p, size]),
        "kws_audio_ring_read": (size, [p, i16p, size]),
        "kws_audio_ring_available": (size, [p]),
        "kws_audio_ring_overruns": (u32, [p]),
        "kws_audio_ring_dropped_samples": (u32, [p]),
        "kws_feature_provider_init": (status, [p]),
        "kws_feature_provider_consume": (size, [p, i16p, size, f32p, ctypes.POINTER(ctypes.c_bool)]),
        "kws_quantize_feature": (ctypes.c_int8, [ctypes.c_float]),
        "kws_feature_window_init": (None, [ctypes.POINTER(window)]),
        "kws_feature_window_push": (None, [ctypes.POINTER(window), f32p]),
        "kws_feature_window_full": (ctypes.c_bool, [ctypes.POINTER(window)]),
        "kws_recognizer_default_config": (RecognizerConfig, []),
        "kws_recognizer_init": (status, [p, ctypes.POINTER(RecognizerConfig)]),
        "kws_recognizer_process": (status, [p, i8p, u32, ctypes.POINTER(Recognition)]),
        "kws_format_boot": (status, [p, size, ctypes.POINTER(BootSettings), sizep]),
        "kws_format_detection": (status, [p, size, u32, ctypes.c_int, ctypes.c_float, u32, sizep]),
        "kws_format_stats": (status, [p, size, ctypes.POINTER(StatsRecord), sizep]),
        "kws_format_error": (status, [p, size, ctypes.c_int, ctypes.c_char_p, sizep]),
        "kws_pipeline_init": (status, [p, i16p, size, ctypes.POINTER(PipelineConfig), ctypes.POINTER(PipelinePlatform),
                                       ctypes.POINTER(ctypes.c_char_p)]),
        "kws_pipeline_step": (ctypes.c_bool, [p]),
        "kws_pipeline_send_error": (None, [p, ctypes.c_int, ctypes.c_char_p]),
        "kws_pipeline_send_stats": (None, [p]),
        "host_replay": (ctypes.c_long, [ctypes.POINTER(RecognizerConfig), ctypes.c_void_p, ctypes.c_void_p, size,
                                        ctypes.c_void_p, ctypes.c_void_p]),
    }


class Core:
    """The host build of the core for one model artifact, with the argument types of every public function
    (as attributes without the `kws_` prefix) and the artifact's manifest."""

    def __init__(self, artifact: Artifact):
        self.artifact, self.manifest = artifact, artifact.manifest
        self.library = build_host_library(artifact, SIZE_PROBE + REPLAY_SOURCE)
        self.lib = lib = ctypes.CDLL(str(self.library))
        self.FeatureWindow = feature_window_type(self.manifest)
        self.sizes = {t: ctypes.c_size_t.in_dll(lib, f"sizeof_{t}").value for t in PROBED_TYPES}
        self.pipeline_ring_offset = ctypes.c_size_t.in_dll(lib, "offsetof_kws_pipeline_ring").value
        for name, (restype, argtypes) in _signatures(self.FeatureWindow).items():
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
            setattr(self, name.removeprefix("kws_"), function)
        for name, mirror in {**MIRRORS, "kws_feature_window": self.FeatureWindow}.items():
            if ctypes.sizeof(mirror) != self.sizes[name]:
                raise FirmwareBuildError(f"the ctypes mirror of {name} is {ctypes.sizeof(mirror)} bytes, the C struct "
                                         f"{self.sizes[name]}: update host_tools/core.py to the header")

    def new(self, type_name: str):
        """Zeroed storage for one instance of an opaque core type, sized by the C compiler."""
        return ctypes.create_string_buffer(self.sizes[type_name])

    def pipeline_config(self, detection: DetectionConfig | None = None) -> PipelineConfig:
        """What main.cpp passes kws_pipeline_init: the exported recognizer defaults (or `detection`) and the
        manifest's cadence, STAT period and microphone gain."""
        app = self.manifest.app
        recognizer = self.recognizer_default_config() if detection is None else RecognizerConfig.of(detection)
        return PipelineConfig(recognizer, app.inference_every_hops, app.stat_period_ms, app.pdm_gain)


_loaded: dict[str, Core] = {}


def load_core(artifact: Artifact) -> Core:
    """The core for this artifact, built and loaded once per process (keyed by its manifest)."""
    key = artifact.manifest.digest()
    if key not in _loaded:
        _loaded[key] = Core(artifact)
    return _loaded[key]


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
    n_mfcc = core.manifest.features.n_mfcc
    chunk, ready, frame = np.zeros(max(READ_SIZES), np.int16), ctypes.c_bool(), np.zeros(n_mfcc, np.float32)
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
    return np.array(frames).reshape(-1, n_mfcc), core.audio_ring_overruns(ring)


def window_of(core: Core, frames: np.ndarray) -> np.ndarray:
    """The int8 model input the C feature window holds after `frames` were pushed, (frames, mfcc)."""
    window = core.FeatureWindow()
    core.feature_window_init(ctypes.byref(window))
    for frame in np.ascontiguousarray(frames, np.float32):
        core.feature_window_push(ctypes.byref(window), float_pointer(frame))
    features = core.manifest.features
    return np.frombuffer(window.data, np.int8).reshape(features.n_frames, features.n_mfcc).copy()


def core_model_input(core: Core, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the device feeds the model for one clip: (float frames, int8 window of the last frames)."""
    frames, overruns = stream_features(core, samples)
    if overruns:
        raise FirmwareBuildError(f"the ring buffer dropped {overruns} blocks of a clip streamed on the host")
    return frames, window_of(core, frames)


class Pipeline:
    """The core's kws_pipeline driven from Python: `write` is the PDM interrupt, `step` one pass of the
    board's loop. The callbacks are the platform's (kws_pipeline_platform, without the context):
    invoke(features, feature_count, scores, score_count) -> bool on int8 pointers, now_ms() and now_us() -> int,
    send(line: bytes).
    ctypes would print and swallow an exception raised in a callback; here it is raised again by the
    call that ran the callback (the constructor, which sends BOOT, or `step`)."""

    def __init__(self, core: Core, invoke, now_ms, now_us, send, config: PipelineConfig | None = None):
        self.core, self.error = core, None
        self.state = core.new("kws_pipeline")
        self.ring = ctypes.addressof(self.state) + core.pipeline_ring_offset
        self.storage = np.zeros(core.manifest.app.audio_ring_samples, np.int16)
        # kept referenced: the C side holds pointers to these thunks
        self.platform = PipelinePlatform(INVOKE(self._guard(invoke, False)), CLOCK(self._guard(now_ms, 0)),
                                         CLOCK(self._guard(now_us, 0)), SEND(self._guard(send, None)), None)
        message = ctypes.c_char_p()
        status = core.pipeline_init(self.state, int16_pointer(self.storage), len(self.storage),
                                    ctypes.byref(config or core.pipeline_config()), ctypes.byref(self.platform),
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


def replay(core: Core, record: list[tuple[int, np.ndarray]], detection: DetectionConfig) -> list[tuple[float, int]]:
    """Detections (s, label index) of the firmware's C recognizer with `detection`'s settings, fed the recorded
    (device ms, int8 outputs) of every inference: the device's own decisions, replayed at other settings."""
    times = np.ascontiguousarray([t for t, _ in record], np.uint32)
    scores = np.ascontiguousarray(np.stack([s for _, s in record]) if record else np.zeros((0, 1)), np.int8)
    detection_times, labels = np.zeros(len(record), np.uint32), np.zeros(len(record), np.intc)
    count = core.host_replay(ctypes.byref(RecognizerConfig.of(detection)), scores.ctypes.data, times.ctypes.data,
                             len(record), detection_times.ctypes.data, labels.ctypes.data)
    if count < 0:
        raise FirmwareBuildError(f"the recognizer refused the settings {detection} or a recorded inference's time")
    return [(int(t) / 1000, int(k)) for t, k in zip(detection_times[:count], labels[:count])]
