"""The pytest side of host_tools.c_build and host_tools.core: the committed model artifact, the `core`
fixture (skipping, or failing in strict mode, naming what to install) and helpers only the tests use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import missing
from host_tools import c_build, core as core_module
from training.artifact import load_artifact

# What `make flash` builds: firmware/src/generated, checked on load.
ARTIFACT = load_artifact()
MANIFEST = ARTIFACT.manifest


def available(requirement, *args):
    """`requirement(*args)`, or skip (fail in strict mode) with its message when something is missing."""
    try:
        return requirement(*args)
    except c_build.ToolMissing as error:
        missing(str(error))


@pytest.fixture(scope="session")
def core() -> core_module.Core:
    """The core compiled with the host gcc for the committed artifact (cached under build/host_core/)."""
    return available(core_module.load_core, ARTIFACT)


def keyword_labels(manifest=MANIFEST) -> list[str]:
    return list(manifest.keywords)


def model_outputs_on_stream(mini_set: Path, hop_frames: int) -> list[tuple[int, np.ndarray]]:
    """(time ms, int8 scores) of the committed model run every `hop_frames` feature frames over a stream of
    real clips: two of each keyword between background noise, as the device would see it."""
    from training.data import read_audio, to_float, to_int16
    from training.features import mfcc, quantize
    from training.quantize import run_litert

    features = MANIFEST.features
    rate = features.sample_rate
    noise = read_audio(mini_set / "_background_noise_" / "doing_the_dishes.wav", rate) * 0.2
    parts = []
    for i, label in enumerate(keyword_labels()):
        parts += [read_audio(path, rate) for path in sorted((mini_set / label).iterdir())[:2]]
        parts.append(noise[i * rate : (i + 1) * rate])
    int8 = quantize(mfcc(to_float(to_int16(np.concatenate(parts))), features), MANIFEST.input.scale,
                    MANIFEST.input.zero_point)
    hop_ms = 1000 * features.hop_samples // rate
    ends = range(features.n_frames, len(int8) + 1, hop_frames)
    outputs = run_litert(ARTIFACT.model, np.stack([int8[end - features.n_frames : end] for end in ends]))
    return [(end * hop_ms, scores) for end, scores in zip(ends, outputs)]
