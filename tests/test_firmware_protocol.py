"""Serial protocol: lines formatted by the C core parse back, field for field, with host_tools.protocol."""
import ctypes

import numpy as np
import pytest

from firmware_build import MANIFEST, core  # noqa: F401  (core is a fixture)
from host_tools.core import BootSettings, RecognizerConfig, StatsRecord
from host_tools.protocol import Boot, Detection, Error, ProtocolError, Stats, parse_line

KWS_OK, KWS_ERR_INVALID_ARGUMENT, KWS_ERR_BUFFER_TOO_SMALL = 0, 1, 4
CONFIG = RecognizerConfig(average_window_ms=750, detection_threshold=0.62, suppression_ms=900, minimum_count=4)
BOOT_SETTINGS = BootSettings(ctypes.pointer(CONFIG), inference_every_hops=7, microphone_gain=35)
STATS = StatsRecord(uptime_ms=4_000_000_000, inferences_per_second=24.456, inference_mean_us=8101,
                    inference_max_us=8377, feature_mean_us=912, audio_overruns=3)
RECORDS = {  # name -> (format call taking (core, buf, size, length), the record it must parse to)
    "boot": (lambda core, *out: core.format_boot(*out[:2], ctypes.byref(BOOT_SETTINGS), out[2]), Boot(
        protocol=2, model=MANIFEST.model_sha256[:16], manifest=MANIFEST.digest()[:16], labels=tuple(MANIFEST.labels),
        sample_rate=MANIFEST.features.sample_rate, window_samples=MANIFEST.features.window_samples,
        hop_samples=MANIFEST.features.hop_samples, fft_size=MANIFEST.features.n_fft, mel_bands=MANIFEST.features.n_mels,
        mfcc_count=MANIFEST.features.n_mfcc, frame_count=MANIFEST.features.n_frames,
        input_scale=MANIFEST.input.scale, input_zero_point=MANIFEST.input.zero_point,
        output_scale=MANIFEST.output.scale, output_zero_point=MANIFEST.output.zero_point,
        average_window_ms=750, detection_threshold=float(np.float32(0.62)), suppression_ms=900, minimum_count=4,
        inference_every_hops=7, microphone_gain=35)),
    "detection": (lambda core, *out: core.format_detection(*out[:2], 4_294_967_295, 2, 0.91249, 8123, out[2]),
                  Detection(time_ms=4_294_967_295, label=list(MANIFEST.labels)[2], score=0.912, inference_us=8123)),
    "stats": (lambda core, *out: core.format_stats(*out[:2], ctypes.byref(STATS), out[2]),
              Stats(uptime_ms=4_000_000_000, inferences_per_second=24.46, inference_mean_us=8101,
                    inference_max_us=8377, feature_mean_us=912, audio_overruns=3)),
    "error": (lambda core, *out: core.format_error(*out[:2], 3, b"time went\tbackwards: t=5 \xff", out[2]),
              Error(code=3, message="time went?backwards: t=5 ?")),
}


def format_line(core, name, size=512):
    """(status, line, length, the whole buffer) for a buffer of `size` bytes plus a guarded tail."""
    buf = ctypes.create_string_buffer(b"#" * (size + 16), size + 16)
    length = ctypes.c_size_t(0)
    status = RECORDS[name][0](core, buf, size, ctypes.byref(length))
    return status, buf.value.decode("ascii"), length.value, buf.raw


@pytest.mark.parametrize("name", RECORDS)
def test_round_trip(core, name):
    status, line, length, _ = format_line(core, name)
    assert status == KWS_OK and length == len(line) and line.startswith("KWS2 ")
    print(f"\n{line}")
    assert parse_line(line + "\r\n") == RECORDS[name][1]


@pytest.mark.parametrize("name", RECORDS)
def test_small_buffers_never_overflow_and_never_get_a_partial_line(core, name):
    full = len(format_line(core, name)[1])
    for size in range(1, full + 1):  # the terminating NUL needs one more byte than the line
        status, line, _, raw = format_line(core, name, size)
        assert status == KWS_ERR_BUFFER_TOO_SMALL and line == "", size
        assert raw[size:] == b"#" * 16, f"wrote past a {size}-byte buffer"
    assert format_line(core, name, full + 1)[0] == KWS_OK


def test_bad_arguments_are_rejected(core):
    buf, length = ctypes.create_string_buffer(256), ctypes.c_size_t()
    assert core.format_detection(buf, 256, 0, len(list(MANIFEST.labels)), 0.5, 1, ctypes.byref(length)) == KWS_ERR_INVALID_ARGUMENT
    assert core.format_detection(buf, 256, 0, -1, 0.5, 1, None) == KWS_ERR_INVALID_ARGUMENT
    assert core.format_error(buf, 256, 1, None, None) == KWS_ERR_INVALID_ARGUMENT
    assert core.format_stats(None, 0, ctypes.byref(STATS), None) == KWS_ERR_INVALID_ARGUMENT


@pytest.mark.parametrize("line, why", [
    ("hello from the bootloader", "not a protocol line"),
    ("KWS1 DET t=1 label=yes score=0.9 us=1", "unsupported protocol version"),
    ("KWS2 HELLO x=1", "unknown record type"),
    ("KWS2 DET t=1 label=yes score=0.9", "needs the fields"),
    ("KWS2 DET label=yes t=1 score=0.9 us=1", "needs the fields"),
    ("KWS2 DET t=1 label=yes score=0.9 us=1 extra=2", "needs the fields"),
    ("KWS2 DET t=1 label=yes score=high us=1", "score='high'"),
    ("KWS2 DET t=1 label=y,s score=0.9 us=1", "is not a label"),
    ("KWS2 DET t=1 label=hey_nano! score=0.9 us=1", "is not a label"),
    ("KWS2 ERR code=1", "needs the fields"),
])
def test_parser_refuses_malformed_lines_saying_why(line, why):
    with pytest.raises(ProtocolError, match=why):
        parse_line(line)
