"""Parser for the device's serial protocol (firmware/PROTOCOL.md), version 2.

    record = parse_line("KWS2 DET t=12345 label=hey+nano score=0.912 us=8123")
    # Detection(time_ms=12345, label='hey nano', score=0.912, inference_us=8123)

Lines that are not valid version-2 records raise ProtocolError saying why. `boot_differences` compares
what a board's BOOT says with the manifest of the model artifact it should run.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 2
PREFIX = f"KWS{VERSION}"


class ProtocolError(ValueError):
    pass


@dataclass(frozen=True)
class Boot:
    protocol: int
    model: str  # first 16 hex digits of the model's SHA-256
    manifest: str  # first 16 hex digits of the exported manifest's digest (training/artifact.py)
    labels: tuple[str, ...]
    sample_rate: int
    window_samples: int
    hop_samples: int
    fft_size: int
    mel_bands: int
    mfcc_count: int
    frame_count: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    average_window_ms: int
    detection_threshold: float
    suppression_ms: int
    minimum_count: int
    inference_every_hops: int
    microphone_gain: int


@dataclass(frozen=True)
class Detection:
    time_ms: int
    label: str
    score: float
    inference_us: int


@dataclass(frozen=True)
class Stats:
    uptime_ms: int
    inferences_per_second: float
    inference_mean_us: int
    inference_max_us: int
    feature_mean_us: int
    audio_overruns: int


@dataclass(frozen=True)
class Error:
    code: int
    message: str


LABEL_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-'+")


def _label(text: str) -> str:
    """A label as sent (a space travels as '+': hey+nano) to the label itself."""
    if not text or not set(text) <= LABEL_CHARACTERS:
        raise ValueError(f"{text!r} is not a label (letters, digits, '_', '-', \"'\" and '+' for a space)")
    return text.replace("+", " ")


def _labels(text: str) -> tuple[str, ...]:
    return tuple(_label(label) for label in text.split(","))


def _float32(text: str) -> float:
    """A %.9g float32 from the device, to the exact float32 value it printed."""
    return struct.unpack("f", struct.pack("f", float(text)))[0]


def _uint32(text: str) -> int:
    """Times, durations and counts: the device prints them as uint32."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise ValueError(f"{text} is not a uint32")
    return value


def _model(text: str) -> str:
    if len(text) != 16 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"{text!r} is not 16 lower-case hex digits")
    return text


# record type -> (class, {key on the wire: (field, parser)}), in wire order
RECORDS = {
    "BOOT": (Boot, {
        "proto": ("protocol", int), "model": ("model", _model), "manifest": ("manifest", _model),
        "labels": ("labels", _labels),
        "rate": ("sample_rate", int), "window": ("window_samples", int), "hop": ("hop_samples", int),
        "fft": ("fft_size", int), "mels": ("mel_bands", int), "mfcc": ("mfcc_count", int),
        "frames": ("frame_count", int), "in_scale": ("input_scale", _float32), "in_zp": ("input_zero_point", int),
        "out_scale": ("output_scale", _float32), "out_zp": ("output_zero_point", int),
        "avg_ms": ("average_window_ms", int), "threshold": ("detection_threshold", _float32),
        "suppress_ms": ("suppression_ms", int), "min_count": ("minimum_count", int),
        "every": ("inference_every_hops", int), "gain": ("microphone_gain", int),
    }),
    "DET": (Detection, {"t": ("time_ms", _uint32), "label": ("label", _label), "score": ("score", float),
                        "us": ("inference_us", _uint32)}),
    "STAT": (Stats, {
        "up_ms": ("uptime_ms", _uint32), "ips": ("inferences_per_second", float),
        "inf_mean_us": ("inference_mean_us", _uint32), "inf_max_us": ("inference_max_us", _uint32),
        "feat_mean_us": ("feature_mean_us", _uint32), "overruns": ("audio_overruns", _uint32),
    }),
    "ERR": (Error, {"code": ("code", int), "msg": ("message", str)}),
}


def parse_line(line: str) -> Boot | Detection | Stats | Error:
    """One line (with or without its "\\r\\n") to its record."""
    text = line.rstrip("\r\n")
    head, _, rest = text.partition(" ")
    if not head.startswith("KWS"):
        raise ProtocolError(f"not a protocol line: {text!r}")
    if head != PREFIX:
        raise ProtocolError(f"unsupported protocol version {head[3:]!r} (this parser reads {VERSION}): {text!r}")
    kind, _, fields = rest.partition(" ")
    if kind not in RECORDS:
        raise ProtocolError(f"unknown record type {kind!r}: {text!r}")
    cls, spec = RECORDS[kind]
    if kind == "ERR":  # msg is last and runs to the end of the line: it may hold spaces and '='
        code, separator, message = fields.partition(" msg=")
        tokens = [code, "msg=" + message] if separator else [fields]
    else:
        tokens = fields.split(" ")
    pairs = [token.partition("=") for token in tokens]
    keys = [key for key, _, _ in pairs]
    if keys != list(spec) or not all(separator for _, separator, _ in pairs):
        raise ProtocolError(f"{kind} needs the fields {' '.join(spec)} in that order, got {keys}: {text!r}")
    values = {}
    for key, _, value in pairs:
        name, convert = spec[key]
        try:
            values[name] = convert(value)
        except ValueError as error:
            raise ProtocolError(f"{kind} field {key}={value!r}: {error}") from None
    return cls(**values)


def boot_differences(boot: Boot, manifest) -> list[str]:
    """'name: board value, artifact value' for every BOOT field that differs from the artifact's manifest
    (training.artifact.Manifest): another model or export, or a setting changed by a build flag."""
    features, detection, quantization = manifest.features, manifest.detection, (manifest.input, manifest.output)
    expected = {
        "model": manifest.model_sha256[:16], "manifest": manifest.digest()[:16], "labels": tuple(manifest.labels),
        "sample_rate": features.sample_rate, "window_samples": features.window_samples,
        "hop_samples": features.hop_samples, "fft_size": features.n_fft, "mel_bands": features.n_mels,
        "mfcc_count": features.n_mfcc, "frame_count": features.n_frames,
        "input_scale": _float32(repr(quantization[0].scale)), "input_zero_point": quantization[0].zero_point,
        "output_scale": _float32(repr(quantization[1].scale)), "output_zero_point": quantization[1].zero_point,
        "average_window_ms": detection.average_window_ms,
        "detection_threshold": _float32(repr(detection.detection_threshold)),
        "suppression_ms": detection.suppression_ms, "minimum_count": detection.minimum_count,
        "inference_every_hops": manifest.app.inference_every_hops, "microphone_gain": manifest.app.pdm_gain,
    }
    return [f"{name}: board {getattr(boot, name)!r}, artifact {value!r}"
            for name, value in expected.items() if getattr(boot, name) != value]
