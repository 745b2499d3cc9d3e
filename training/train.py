"""Train a keyword spotter end to end: data -> MFCC -> Keras -> int8 -> TFLM check -> firmware export.

    python -m training.train --data-dir DIR --preset kws12 --arch dscnn --out build/kws12-dscnn

Without --data-dir (or $KWS_DATA_DIR) Speech Commands is downloaded into data/.
Writes RUN/model_float.keras, RUN/model_int8.tflite, RUN/report.json (with the model's manifest,
training/artifact.py), RUN/confusion.png and, unless --no-export, the manifest, the model and the
generated C sources into the firmware project. The run folder appears only when the run is complete.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from training import run_folder
from training.config import (ARCHITECTURES, PRESETS, AppConfig, DetectionConfig, FeatureConfig, TrainConfig, labels_for,
                             with_overrides)
from training.data import DataError, augment, load_dataset, load_test_set, to_float
from training.download import DEFAULT_CACHE_DIR, REPO_ROOT, resolve_data_dir
from training.features import cached_mfcc, mfcc_parallel
from training.features import quantize as quantize_features

def parse_args(argv=None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="Speech Commands in the official layout (default: $KWS_DATA_DIR, else download)")
    p.add_argument("--dataset-version", default="v0.02", choices=("v0.02", "v0.01"), help="what to download")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="downloads and feature cache (data/)")
    p.add_argument("--preset", default="wakeword", choices=PRESETS)
    p.add_argument("--keywords", nargs="+", help="wakeword preset: the keyword(s) (default: marvin)")
    p.add_argument("--arch", default="dscnn", choices=ARCHITECTURES)
    p.add_argument("--out", type=Path, help="run folder (default: a new build/PRESET-ARCH-TIME; build/latest links to "
                                            "the run last exported to firmware/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder (only once this run completes)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--silence-share", type=float, default=defaults.silence_share, help="silence clips per keyword clip")
    p.add_argument("--unknown-share", type=float, default=defaults.unknown_share, help="unknown clips per keyword clip")
    p.add_argument("--limit-per-label", type=int, help="use at most this many keyword clips per label and split (quick runs)")
    p.add_argument("--skip-bad-audio", action="store_true", help="skip unreadable files and count them in the report")
    p.add_argument("--test-set", type=Path, help="also evaluate on a canonical test set (speech_commands_test_set_v0.02)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="a detection or device setting exported with the model, e.g. detection.suppression_ms=2000 "
                        "or app.inference_every_hops=5 (repeatable; training/config.py)")
    p.add_argument("--firmware-dir", type=Path, default=REPO_ROOT / "firmware", help="PlatformIO project to export into")
    p.add_argument("--no-export", action="store_true", help="do not write into the firmware project")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        p.error(f"--learning-rate must be a positive number, not {args.learning_rate}")
    for name in ("silence_share", "unknown_share"):  # above 1 is fine: a wake word wants more negatives
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            p.error(f"--{name.replace('_', '-')} must be a number >= 0, not {getattr(args, name)}")
    return args


def augmented_batches(train, noises, cfg: FeatureConfig, train_cfg: TrainConfig):
    """Training batches (a keras PyDataset) whose augmentation is drawn afresh each epoch from (seed, epoch)."""
    from training.model import keras

    class AugmentedEpochs(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self._draw()

        def _draw(self):
            rng = np.random.default_rng([train_cfg.seed, self.epoch])
            audio = augment(train.audio, noises, train_cfg.augment, rng)
            self.features = mfcc_parallel(audio, cfg)[..., np.newaxis]
            self.order = rng.permutation(len(audio))

        def __len__(self):
            return math.ceil(len(self.order) / train_cfg.batch_size)

        def __getitem__(self, i):
            batch = self.order[i * train_cfg.batch_size : (i + 1) * train_cfg.batch_size]
            return self.features[batch], train.labels[batch]

        def on_epoch_end(self):
            self.epoch += 1
            self._draw()

    return AugmentedEpochs()


def fit(arch, labels, splits, noises, cfg: FeatureConfig, train_cfg: TrainConfig, run_dir: Path, feature_cache: Path):
    """Train on freshly augmented audio each epoch; keep the best-validation checkpoint in RUN/model_float.keras."""
    from training.model import build_model, keras

    keras.utils.set_random_seed(train_cfg.seed)
    val_x = cached_mfcc(to_float(splits["validation"].audio), cfg, feature_cache)[..., np.newaxis]
    batches = augmented_batches(splits["training"], noises, cfg, train_cfg)
    model = build_model(arch, len(labels), cfg)
    schedule = keras.optimizers.schedules.CosineDecay(train_cfg.learning_rate, train_cfg.epochs * len(batches), alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary(print_fn=lambda line, **_: print(line))
    starts, seconds = [], []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: starts.append(time.monotonic()),
                                           on_epoch_end=lambda *_: seconds.append(time.monotonic() - starts[-1]))
    history = model.fit(
        batches, epochs=train_cfg.epochs, validation_data=(val_x, splits["validation"].labels), verbose=2,
        callbacks=[keras.callbacks.ModelCheckpoint(run_dir / "model_float.keras", monitor="val_accuracy", save_best_only=True),
                   keras.callbacks.TerminateOnNaN(), timer],
    )
    best = int(np.nanargmax(history.history["val_accuracy"])) if np.isfinite(history.history["val_accuracy"]).any() else 0
    return model, {
        "best_epoch": best + 1,
        "best_val_accuracy": float(history.history["val_accuracy"][best]),
        "seconds_per_epoch": float(np.mean(seconds)),
        "train_seconds": float(np.sum(seconds)),
    }


def quantize_and_verify(arch, labels, splits, cfg: FeatureConfig, seed: int, run_dir: Path, feature_cache: Path) -> dict:
    """Full-int8 model of the best checkpoint, stripped, with its arena and the proof that stripping changed nothing."""
    from training import quantize
    from training.flatbuffer import inspect_model
    from training.model import build_model, keras

    # Converted from a batch-1 copy, so every tensor shape is static.
    deployable = build_model(arch, len(labels), cfg, batch_size=1)
    checkpoint = run_dir / "model_float.keras"
    if not checkpoint.is_file():
        raise DataError("training produced no checkpoint: the loss was not a number from the first epoch "
                        "(lower --learning-rate, check the data)")
    deployable.set_weights(keras.models.load_model(checkpoint).get_weights())
    if not all(np.all(np.isfinite(w)) for w in deployable.get_weights()):
        raise DataError("training diverged: the model's weights are NaN or infinite (lower --learning-rate)")
    clean_train = cached_mfcc(to_float(splits["training"].audio), cfg, feature_cache)
    rng = np.random.default_rng(seed)
    representative = clean_train[rng.choice(len(clean_train), min(500, len(clean_train)), replace=False)]
    converted = quantize.convert_int8(deployable, representative)
    model_bytes = quantize.strip(converted)
    (run_dir / "model_int8.tflite").write_bytes(model_bytes)
    info = inspect_model(model_bytes)
    test_features = cached_mfcc(to_float(splits["testing"].audio), cfg, feature_cache)
    test_inputs = quantize_features(test_features, info.input.scale, info.input.zero_point)
    arena = quantize.smallest_arena(model_bytes, test_inputs)
    strip_safe = np.array_equal(quantize.run_tflm(converted, test_inputs, arena), quantize.run_tflm(model_bytes, test_inputs, arena))
    return {"model_bytes": model_bytes, "arena": arena, "figures": {
        "parameters": int(deployable.count_params()), "int8_weight_bytes": info.int8_weight_bytes,
        "int32_bias_bytes": info.int32_bias_bytes, "tflite_bytes": len(model_bytes),
        "tflite_bytes_before_strip": len(converted), "strip_keeps_tflm_outputs": bool(strip_safe),
        "multiply_accumulates": info.multiply_accumulates, "ops": list(info.ops)}}


@dataclass
class Data:
    folder: Path
    splits: dict
    noises: list
    test_set: object  # Clips of a canonical test set, or None


def load(args, labels, cfg: FeatureConfig, train_cfg: TrainConfig) -> Data:
    """Every check on the user's data, before TensorFlow starts."""
    data_dir = resolve_data_dir(args.data_dir, args.dataset_version, args.cache_dir)
    print(f"loading {data_dir} ({args.preset}: {', '.join(labels)})", flush=True)
    splits, noises = load_dataset(data_dir, labels, cfg, train_cfg.silence_share, train_cfg.unknown_share,
                                  train_cfg.seed, args.skip_bad_audio, limit_per_label=args.limit_per_label)
    test_set = load_test_set(args.test_set, labels, cfg, args.skip_bad_audio) if args.test_set else None
    for split, clips in splits.items():
        print(f"  {split:>10}: {len(clips)} clips {clips.counts(labels)}", flush=True)
    return Data(data_dir, splits, noises, test_set)


def evaluate_run(run_dir: Path, artifact, splits, test_set, feature_cache: Path) -> tuple[dict, dict | None]:
    """Test-split (and canonical test set) accuracy under Keras, LiteRT and TFLM, with confusion matrices."""
    from training import evaluate

    print("evaluating the testing split under Keras, LiteRT and TFLM", flush=True)
    test = evaluate.evaluate(run_dir, artifact, splits["testing"], cache_dir=feature_cache)
    evaluate.save_confusion(test, artifact.manifest.labels, run_dir / "confusion.png")
    canonical = None
    if test_set is not None:
        canonical = evaluate.evaluate(run_dir, artifact, test_set, cache_dir=feature_cache)
        evaluate.save_confusion(canonical, artifact.manifest.labels, run_dir / "confusion_test_set.png")
    return test, canonical


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else list(map(str, argv)))
    started = time.monotonic()
    cfg = FeatureConfig()
    train_cfg = replace(TrainConfig(), epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                        seed=args.seed, silence_share=args.silence_share, unknown_share=args.unknown_share)
    run_dir = args.out or REPO_ROOT / "build" / f"{args.preset}-{args.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        labels = labels_for(args.preset, args.keywords)
        settings = with_overrides({"detection": DetectionConfig(), "app": AppConfig()}, args.settings)
        settings["detection"].check()
        settings["app"].check()
        run_folder.check_free(run_dir, args.overwrite)
        run_folder.require_writable(args.cache_dir, f"--cache-dir {args.cache_dir}")
        data = load(args, labels, cfg, train_cfg)
        with run_folder.writing(run_dir, args.overwrite) as scratch:
            report = train_in(scratch, args, labels, train_cfg, settings, data, command)
    except (DataError, ValueError, run_folder.RunFolderError) as error:  # ArtifactError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {run_dir} was left as it was", file=sys.stderr)
        return 130
    exported = [] if args.no_export else export_run(run_dir, args.firmware_dir, command)
    summarize(report, run_dir, exported, time.monotonic() - started)
    if not report["tflm_equals_litert"]["identical"] or not report["model"]["strip_keeps_tflm_outputs"]:
        print("error: TFLM outputs differ from LiteRT's reference kernels or from the unstripped model", file=sys.stderr)
        return 1
    return 0


def train_in(scratch: Path, args, labels, train_cfg: TrainConfig, settings: dict, data: Data, command: str) -> dict:
    """Train, quantize, check and evaluate into the run's scratch folder; returns the report it wrote."""
    from training.artifact import Artifact, build_manifest

    cfg, splits, feature_cache = FeatureConfig(), data.splits, args.cache_dir / "features"
    t = started = time.monotonic()
    for split in ("training", "validation", "testing"):  # clean features, computed once and cached
        cached_mfcc(to_float(splits[split].audio), cfg, feature_cache)
    feature_seconds = time.monotonic() - t
    _, training = fit(args.arch, labels, splits, data.noises, cfg, train_cfg, scratch, feature_cache)
    int8 = quantize_and_verify(args.arch, labels, splits, cfg, train_cfg.seed, scratch, feature_cache)
    manifest = build_manifest(int8["model_bytes"], labels, cfg, settings["detection"], settings["app"], int8["arena"])
    artifact = Artifact(manifest, int8["model_bytes"], scratch)
    test, canonical = evaluate_run(scratch, artifact, splits, data.test_set, feature_cache)
    report = {
        "command": command, "preset": args.preset, "arch": args.arch, "seed": train_cfg.seed,
        "manifest": manifest.to_dict(), "augment": asdict(train_cfg.augment),
        "training": {**{k: v for k, v in asdict(train_cfg).items() if k != "augment"}, **training,
                     "feature_seconds": feature_seconds},
        "dataset": {"data_dir": str(data.folder), "silence_share": train_cfg.silence_share,
                    "unknown_share": train_cfg.unknown_share, "limit_per_label": args.limit_per_label,
                    "splits": {split: clips.counts(labels) for split, clips in splits.items()},
                    "skipped_files": [msg for clips in splits.values() for msg in clips.skipped]},
        "model": int8["figures"], "tflm_equals_litert": test["tflm_equals_litert"], "test": test,
        "test_set": canonical, "seconds": time.monotonic() - started,
    }
    (scratch / "report.json").write_text(json.dumps(report, indent=2))
    return report


def export_run(run_dir: Path, firmware_dir: Path, command: str) -> list[Path]:
    """The completed run's manifest, model and C sources into the firmware project; build/latest follows
    the repository's own firmware."""
    from training.artifact import load_artifact
    from training.export import GENERATED_DIR, export

    artifact = load_artifact(run_dir)
    exported = export(firmware_dir / GENERATED_DIR, artifact.manifest, artifact.model, command)
    if firmware_dir.resolve() == (REPO_ROOT / "firmware").resolve():
        latest = REPO_ROOT / "build" / "latest"
        latest.parent.mkdir(exist_ok=True)
        latest.unlink(missing_ok=True)
        latest.symlink_to(run_dir.resolve())
    return exported


def summarize(report: dict, run_dir: Path, exported: list[Path], total_seconds: float) -> None:
    m, accuracies = report["model"], report["test"]["engines"]
    print(f"\n{report['arch']} ({report['preset']}), run folder {run_dir}")
    print(f"  parameters {m['parameters']:,}, int8 weights {m['int8_weight_bytes']:,} B, "
          f".tflite {m['tflite_bytes']:,} B, arena {report['manifest']['arena_bytes']:,} B, "
          f"{m['multiply_accumulates']:,} MACs")
    print("  test accuracy: " + ", ".join(f"{e} {100 * r['accuracy']:.2f}%" for e, r in accuracies.items())
          + f" (n={report['test']['n']})")
    print(f"  TFLM output identical to LiteRT: {report['tflm_equals_litert']['identical']}")
    if report["test_set"]:
        print(f"  canonical test set: {100 * report['test_set']['accuracy']:.2f}% (n={report['test_set']['n']})")
    for path in exported:
        print(f"  exported {path}")
    print(f"  total {total_seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
