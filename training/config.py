"""The one definition of features, labels and detection settings.

Everything the firmware needs to agree with training is defined here and
written to the firmware by `training.export`; nothing is typed twice.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_NOISE_DIR = "_background_noise_"

# The 10 command words of Hello Edge, MLPerf Tiny and kws_streaming.
KWS12_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# MLPerf Tiny's streaming wake-word benchmark listens for "marvin".
DEFAULT_WAKEWORD = "marvin"
PRESETS = ("wakeword", "kws12")


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
    return [SILENCE, UNKNOWN, *words]


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
    noise_volume: tuple[float, float] = (0.0, 0.1)  # noise amplitude relative to full scale


@dataclass(frozen=True)
class DetectionConfig:
    """Default command-recognizer settings, exported to the firmware (overridable at build time)."""

    average_window_ms: int = 1000
    detection_threshold: float = 0.8  # on the averaged probability of a keyword
    suppression_ms: int = 1500
    minimum_count: int = 3  # results needed in the window before any decision


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 120
    batch_size: int = 100
    learning_rate: float = 3e-3
    seed: int = 1
    silence_share: float = 0.1  # relative to the keyword clips of each split
    unknown_share: float = 0.1
    augment: AugmentConfig = field(default_factory=AugmentConfig)
