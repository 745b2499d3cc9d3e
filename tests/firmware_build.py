"""The pytest side of host_tools.firmware_core: the `core` fixture (skipping, or failing in strict
mode, naming what to install) and helpers only the tests use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import missing
from host_tools import firmware_core
from host_tools.firmware_core import (ARM_FLAGS, C_FLAGS, CORE_DIR, CORE_SOURCES, INCLUDES,  # noqa: F401  (re-exported)
                                      MIRRORS, SETTINGS, FeatureWindow, Recognition, RecognizerConfig, StatsRecord,
                                      compile_checked, exported_model, float_pointer, int16_pointer, stream_features)


def available(requirement, *args):
    """`requirement(*args)`, or skip (fail in strict mode) with its message when something is missing."""
    try:
        return requirement(*args)
    except firmware_core.ToolMissing as error:
        missing(str(error))


@pytest.fixture(scope="session")
def core() -> firmware_core.Core:
    """The core compiled with the host gcc (cached under build/host_core/)."""
    return available(firmware_core.load_core)


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
