"""Is the firmware's core equal to training? Checked on real audio with the model that would be flashed.

    python -m host_tools.firmware_check DIR [--model ARTIFACT] [--min-agreement 0.995]
    make firmware-check CLIPS=DIR

Every WAV/FLAC/Ogg file under DIR (any sample rate) is read and fitted to one second as training
does (training.data.read_audio, fit_length), then featurized twice: by the core built for the host
(int16 through the ring buffer in odd chunks, the streaming MFCC provider and the int8 feature
window: what the device feeds the model) and by training (training.features.mfcc + quantize). The
model artifact (firmware/src/generated, what would be flashed, by default) runs on both under the
TensorFlow Lite Micro Python runtime with its exported arena size. Prints the share of identical int8 features, the largest difference in
quantization steps and in float, the prediction agreement, and the core's Cortex-M4F sizes. Exits 1
when the agreement is below --min-agreement.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from host_tools import c_build
from host_tools.core import Core, core_model_input, load_core
from training.artifact import FIRMWARE_GENERATED_DIR, ArtifactError, load_artifact
from training.data import DataError, audio_files


@dataclass
class Parity:
    clips: list[Path]
    core_int8: np.ndarray       # (clips, frames, mfcc)
    training_int8: np.ndarray
    float_difference: float     # largest |core - training| over every float feature
    core_labels: np.ndarray     # argmax of the model's output on the core's features
    training_labels: np.ndarray
    disagreements: list[str] = field(default_factory=list)

    @property
    def identical_share(self) -> float:
        return float(np.mean(self.core_int8 == self.training_int8))

    @property
    def max_step(self) -> int:
        return int(np.abs(self.core_int8.astype(np.int32) - self.training_int8).max())

    @property
    def agreement(self) -> float:
        return float(np.mean(self.core_labels == self.training_labels))


def compare(core: Core, paths: list[Path]) -> Parity:
    """The core's and training's features of each clip, and the core's model's decisions on both."""
    from training.data import fit_length, read_audio, to_float, to_int16
    from training.features import mfcc, quantize
    from training.quantize import run_tflm

    manifest, model = core.manifest, core.artifact.model
    rate, clip_samples = manifest.features.sample_rate, manifest.features.clip_samples
    clips = np.stack([to_int16(fit_length(read_audio(path, rate), clip_samples)) for path in paths])
    core_float, core_int8 = zip(*(core_model_input(core, clip) for clip in clips))
    core_float, core_int8 = np.stack(core_float), np.stack(core_int8)
    training_float = mfcc(to_float(clips), manifest.features)
    training_int8 = quantize(training_float, manifest.input.scale, manifest.input.zero_point)
    core_labels = run_tflm(model, core_int8, manifest.arena_bytes).argmax(axis=-1)
    training_labels = run_tflm(model, training_int8, manifest.arena_bytes).argmax(axis=-1)
    labels = manifest.labels
    disagreements = [f"{path}: core -> {labels[a]}, training -> {labels[b]}"
                     for path, a, b in zip(paths, core_labels, training_labels) if a != b]
    return Parity(list(paths), core_int8, training_int8,
                  float(np.abs(core_float.astype(np.float64) - training_float).max()),
                  core_labels, training_labels, disagreements)


def cross_compiled_sizes(core: Core, out_dir: Path) -> dict[str, tuple[int, int, int]]:
    """(text, data, bss) of every core unit and of kissfft, compiled for Cortex-M4F."""
    objects = c_build.cross_compile_core(core.artifact, out_dir) + c_build.cross_compile_kissfft(out_dir)
    return c_build.arm_size(objects)


def size_table(sizes: dict[str, tuple[int, int, int]]) -> str:
    rows = [f"  {'unit':<24}{'text':>8}{'data':>8}{'bss':>8}"]
    rows += [f"  {name:<24}{t:>8}{d:>8}{b:>8}" for name, (t, d, b) in sizes.items()]
    total = np.sum(list(sizes.values()), axis=0)
    rows.append(f"  {'total':<24}{total[0]:>8}{total[1]:>8}{total[2]:>8}")
    return "\n".join(rows)


def report(core: Core, parity: Parity, folder: Path, sizes: dict[str, tuple[int, int, int]]) -> str:
    n, manifest = len(parity.clips), core.manifest
    agree = int(np.sum(parity.core_labels == parity.training_labels))
    lines = [
        f"firmware check: {n} clips under {folder}, model {core.artifact.name}",
        f"int8 features identical: {parity.identical_share:.4%} of {parity.core_int8.size} values",
        f"largest int8 difference: {parity.max_step} quantization step(s)",
        f"largest float difference: {parity.float_difference:.6g} (one int8 step = {manifest.input.scale:.6g})",
        f"prediction agreement (TFLM, arena {manifest.arena_bytes} B): {agree}/{n} clips = {parity.agreement:.4%}",
        *(f"  differs: {line}" for line in parity.disagreements[:10]),
        "Cortex-M4F sizes in bytes (arm-none-eabi-gcc " + " ".join(c_build.ARM_FLAGS) + "):",
        size_table(sizes),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", type=Path, help="folder of WAV/FLAC/Ogg clips, searched recursively")
    parser.add_argument("--model", type=Path, default=FIRMWARE_GENERATED_DIR,
                        help="model artifact: a generated folder or a run folder (default firmware/src/generated)")
    parser.add_argument("--min-agreement", type=float, default=0.995,
                        help="fail when fewer predictions than this share agree (default 0.995)")
    args = parser.parse_args(argv)
    try:
        paths = audio_files(args.clips, recursive=True)
        core = load_core(load_artifact(args.model))
        parity = compare(core, paths)
        with tempfile.TemporaryDirectory() as out:
            sizes = cross_compiled_sizes(core, Path(out))
    except (DataError, ArtifactError, c_build.FirmwareBuildError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(core, parity, args.clips, sizes))
    if parity.agreement < args.min_agreement:
        print(f"error: prediction agreement {parity.agreement:.4%} is below --min-agreement {args.min_agreement:.4%}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
