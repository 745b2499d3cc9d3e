"""The one definition of features, labels, detection and device settings.

Everything the firmware needs to agree with training is defined here, gathered into one manifest
(`training.artifact`) and written to the firmware by `training.export`; nothing is typed twice.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_NOISE_DIR = "_background_noise_"

# The 10 command words of Hello Edge, MLPerf Tiny and kws_streaming.
KWS12_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# Speech Commands v0.02's other 25 words: synthetic clips of them train as unknown beside synthetic
# keywords (training/synthetic_sets.py's other_words), so that a synthetic voice is no cue for the keyword.
OTHER_WORDS = ("backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four", "happy", "house",
               "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three", "tree", "two", "visual", "wow", "zero")
# MLPerf Tiny's streaming wake-word benchmark listens for "marvin".
DEFAULT_WAKEWORD = "marvin"
PRESETS = ("wakeword", "kws12")
# Model architectures (training/model.py builds each): ours, MLPerf Tiny's reference, TFLM micro_speech's.
ARCHITECTURES = ("dscnn", "mlperf_dscnn", "tiny_conv")


# A label travels in C strings, folder names and protocol lines: letters, digits, '_', '-', "'" and
# single spaces between words ("hey nano"); the serial protocol sends a space as '+'.
LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-' ")


def check_label(label: str) -> str:
    """`label` when it can travel everywhere; a ValueError naming it otherwise."""
    if not label or not set(label) <= LABEL_CHARACTERS or label != " ".join(label.split()):
        raise ValueError(f"label {label!r}: use letters, digits, '_', '-', \"'\" and single spaces between words")
    return label


def is_keyword(label: str) -> bool:
    return label not in (SILENCE, UNKNOWN)


def labels_for(preset: str, keywords: list[str] | None = None) -> list[str]:
    """Class labels in model output order: silence, unknown, then the keywords."""
    if preset == "kws12":
        if keywords:
            raise ValueError("--keywords applies to the 'wakeword' preset only; kws12 has a fixed word set")
        words = list(KWS12_WORDS)
    elif preset == "wakeword":
        words = list(keywords) if keywords else [DEFAULT_WAKEWORD]
    else:
        raise ValueError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if len(set(words)) != len(words):
        raise ValueError(f"keywords repeat: {words}")
    return [SILENCE, UNKNOWN, *map(check_label, words)]


@dataclass(frozen=True)
class FeatureConfig:
    """MFCC geometry of Hello Edge and MLPerf Tiny: 40 ms windows every 20 ms, 49 frames a second.

    Streaming-safe by construction: frames are not centred (no padding beyond
    the clip), and the log floor is absolute, not relative to the clip's peak.
    """

    sample_rate: int = 16000
    clip_samples: int = 16000
    window_samples: int = 640  # 40 ms
    hop_samples: int = 320  # 20 ms
    n_fft: int = 640  # one window per FFT, so every frame sees exactly its 40 ms
    n_mels: int = 40
    n_mfcc: int = 10
    fmin: float = 20.0
    fmax: float = 4000.0
    log_floor: float = 1e-6  # mel power floor before 10*log10 (absolute, streamable)

    @property
    def n_frames(self) -> int:
        return 1 + (self.clip_samples - self.window_samples) // self.hop_samples

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict:
        return {**asdict(self), "n_frames": self.n_frames}


@dataclass(frozen=True)
class AugmentConfig:
    """Drawn afresh every epoch from (seed, epoch), as TensorFlow's speech_commands does."""

    speed: tuple[float, float] = (0.9, 1.1)  # resampling factor: tempo and pitch of other speakers
    time_shift_samples: int = 1600  # +-100 ms
    gain_db: tuple[float, float] = (-10.0, 5.0)  # features keep absolute level, so vary it
    noise_probability: float = 0.8
    # Background noise under a clip at a signal-to-noise ratio over the clip's own level, as a microphone
    # hears a voice over a room; with silence clips as loud as -10 dBFS, noisy words must be words.
    noise_snr_db: tuple[float, float] = (5.0, 30.0)


@dataclass(frozen=True)
class StreamConfig:
    """Training windows as the device sees them in a stream (the wakeword preset; training/augment.py).

    A clip is shifted anywhere within +-shift_samples (with `whole_probability`, only within +-whole_shift_samples,
    which keeps a centred word whole), so the 1 s window holds the word whole, in part or not at all, as the
    device's windows every 200 ms do; keyword clips are seen `keyword_repeats` times an epoch, since only the
    windows that hold the word whole teach the keyword. Its label follows from the share of
    the word's speech energy inside the window: at least `full_fraction`, the keyword; at most
    `none_fraction`, not the keyword (unknown); in between it is not trained on (weight 0), because a
    window with part of the word is neither. Another word may sit beside it (`context_probability`)."""

    enabled: bool = True
    shift_samples: int = 12000  # +-0.75 s
    whole_shift_samples: int = 4000  # +-0.25 s
    whole_probability: float = 0.5
    keyword_repeats: int = 2
    # Levels as a stream has them, instead of a gain relative to the recording: a clip's RMS is drawn in
    # dBFS, and the background noise under it at a signal-to-noise ratio (with augment.noise_probability).
    # The benchmark's stream holds speech at 10-20 dB over noise at -50 dBFS; recordings are -35 to -17 dBFS.
    level_dbfs: tuple[float, float] = (-45.0, -15.0)
    snr_db: tuple[float, float] = (5.0, 30.0)
    full_fraction: float = 0.8
    none_fraction: float = 0.3
    context_probability: float = 0.3
    context_gain_db: tuple[float, float] = (-6.0, 0.0)  # relative to the clip it sits beside
    # Hard negatives: windows of the training negatives on which the current model fires, mined during
    # training (training/mining.py) into slots of each epoch (a share of the keyword rows).
    hard_negative_share: float = 2.0
    mining_rounds: int = 5
    mining_threshold: float = 0.2  # keyword probability at which a window counts as firing
    mining_positions: int = 7  # shifts each pool clip is scored at, evenly across +-shift_samples
    mining_windows: int = 40_000  # most windows scored a round (a random subset of a bigger pool's)


@dataclass(frozen=True)
class DetectionConfig:
    """Default command-recognizer settings, exported to the firmware (overridable at build time)."""

    average_window_ms: int = 1000
    detection_threshold: float = 0.8  # on the averaged probability of a keyword
    suppression_ms: int = 1500
    minimum_count: int = 3  # results needed in the window before any decision

    def check(self) -> None:
        if self.average_window_ms < 1 or not 1 <= self.minimum_count <= 64 or self.suppression_ms < 0:
            raise ValueError(f"detection settings out of range: {self} (average_window_ms >= 1, "
                             "1 <= minimum_count <= 64, suppression_ms >= 0)")
        if not 0 < self.detection_threshold <= 1:
            raise ValueError(f"detection_threshold {self.detection_threshold!r} must be in (0, 1]")


@dataclass(frozen=True)
class AppConfig:
    """Settings of the device application (firmware/src), exported beside the model's."""

    # One inference every this many 20 ms hops (200 ms): the DS-CNN needs about 1.5 M multiply-
    # accumulates, which a Cortex-M4F at 64 MHz cannot run every hop; every 10 hops still gives the
    # recognizer 5 results per 1 s window (`make firmware-benchmark` measures the budget).
    inference_every_hops: int = 10
    # Ring buffer between the PDM interrupt and the loop: 4096 samples = 256 ms, more than one
    # inference period plus a PDM block. A power of two, as kws_audio_ring_init requires.
    audio_ring_samples: int = 4096
    pdm_block_samples: int = 256  # 16 ms per interrupt (the Mbed core's default 512-byte buffer)
    pdm_gain: int = 20  # the PDM library's default for the BLE Sense
    # Added to the arena TFLM's Python runtime needed: CMSIS-NN kernels on the board ask for scratch
    # buffers the reference kernels do not; too small an arena is reported (ERR code=5), never a crash.
    arena_margin_bytes: int = 4096
    stat_period_ms: int = 5000
    error_repeat_ms: int = 2000  # a set-up failure is repeated, so a monitor opened later sees it
    led_on_ms: int = 1000  # the built-in LED after a detection

    def check(self) -> None:
        ring = self.audio_ring_samples
        if ring < 2 or ring & (ring - 1) or ring > 1 << 20:
            raise ValueError(f"audio_ring_samples {ring} must be a power of two from 2 to 2^20")
        if min(self.inference_every_hops, self.pdm_block_samples, self.stat_period_ms) < 1 or self.pdm_block_samples > ring:
            raise ValueError(f"device settings out of range: {self} (inference_every_hops, pdm_block_samples and "
                             "stat_period_ms >= 1; pdm_block_samples <= audio_ring_samples)")
        if min(self.pdm_gain, self.arena_margin_bytes, self.error_repeat_ms, self.led_on_ms) < 0:
            raise ValueError(f"device settings must not be negative: {self}")


def with_overrides(configs: dict, assignments: list[str]) -> dict:
    """`configs` ({section: frozen dataclass}) with `section.field=value` assignments applied.

    One mechanism for every command that takes `--set`: values are converted to the field's type, and
    an unknown section or field, or a value that does not convert, is a ValueError naming it."""
    changes: dict[str, dict] = {section: {} for section in configs}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        section, _, name = key.strip().partition(".")
        if not separator or section not in configs:
            raise ValueError(f"--set {assignment!r}: expected SECTION.NAME=VALUE with SECTION one of {', '.join(configs)}")
        fields = [f.name for f in dataclasses.fields(configs[section])]
        if name not in fields:
            raise ValueError(f"--set {assignment}: {section} has no setting {name!r} (it has {', '.join(fields)})")
        kind = type(getattr(configs[section], name))
        try:
            value = kind(float(text)) if kind is int and float(text).is_integer() else kind(text)
        except ValueError:
            raise ValueError(f"--set {assignment}: {text!r} is not a {kind.__name__}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--set {assignment}: {text!r} is not a finite number")
        changes[section][name] = value
    return {section: dataclasses.replace(config, **changes[section]) for section, config in configs.items()}


@dataclass(frozen=True)
class AcousticConfig:
    """The room and microphone given to synthetic (text-to-speech) clips in training: training/acoustics.py."""

    reverb_probability: float = 0.5
    rt60_range_s: tuple[float, float] = (0.2, 0.8)
    drr_range_db: tuple[float, float] = (0.0, 12.0)
    first_reflection_range_s: tuple[float, float] = (0.001, 0.01)
    microphone_probability: float = 1.0
    highpass_range_hz: tuple[float, float] = (30.0, 70.0)
    lowpass_range_hz: tuple[float, float] = (6600.0, 7600.0)
    lowpass_order: int = 8


@dataclass(frozen=True)
class TrainConfig:
    # None: as many epochs as make about `examples` training examples, within [min_epochs, max_epochs]:
    # 120 on a small set such as the mini set; about 38 on the full Speech Commands, which then trains within
    # an hour on 2 cores (MLPerf Tiny's reference trains 36 epochs on it).
    epochs: int | None = None
    examples: int = 3_000_000
    min_epochs: int = 20
    max_epochs: int = 120
    batch_size: int = 100
    learning_rate: float = 3e-3
    seed: int = 1
    silence_share: float = 0.1  # relative to the keyword clips of each split
    recording_share: float = 0.5  # of a keyword's training rows, at least, when it has synthetic clips too
    silence_dbfs: tuple[float, float] = (-70.0, -10.0)  # RMS levels of silence clips: a quiet room to loud noise
    unknown_share: float = 0.1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    acoustics: AcousticConfig | None = field(default_factory=AcousticConfig)  # None: synthetic clips stay dry

    def epochs_for(self, rows: int) -> int:
        """The number of epochs over `rows` training rows."""
        if self.epochs is not None:
            return self.epochs
        return int(min(self.max_epochs, max(self.min_epochs, math.ceil(self.examples / max(rows, 1)))))
