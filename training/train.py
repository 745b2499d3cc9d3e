"""Train a keyword spotter end to end: data -> MFCC -> Keras -> int8 -> TFLM check -> firmware export.

    python -m training.train --data-dir DIR --preset kws12 --arch dscnn --out build/kws12-dscnn

Without --data-dir (or $KWS_DATA_DIR) Speech Commands is downloaded into data/.
Writes RUN/model_float.keras, RUN/model_int8.tflite, RUN/report.json, RUN/confusion.png
and, unless --no-export, the generated C sources into the firmware project.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from training.config import PRESETS, DetectionConfig, FeatureConfig, TrainConfig, labels_for
from training.data import DEFAULT_CACHE_DIR, REPO_ROOT, DataError, augment, load_dataset, load_test_set, resolve_data_dir, to_float
from training.features import cached_mfcc, mfcc_parallel
from training.features import quantize as quantize_features
from training.model import ARCHITECTURES


def parse_args(argv=None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="Speech Commands in the official layout (default: $KWS_DATA_DIR, else download)")
    p.add_argument("--dataset-version", default="v0.02", choices=("v0.02", "v0.01"), help="what to download")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="downloads and feature cache (data/)")
    p.add_argument("--preset", default="wakeword", choices=PRESETS)
    p.add_argument("--keywords", nargs="+", help="wakeword preset: the keyword(s) (default: marvin)")
    p.add_argument("--arch", default="dscnn", choices=sorted(ARCHITECTURES))
    p.add_argument("--out", type=Path, help="run folder (default: a new build/PRESET-ARCH-TIME; build/latest links to it)")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--silence-share", type=float, default=defaults.silence_share, help="silence clips per keyword clip")
    p.add_argument("--unknown-share", type=float, default=defaults.unknown_share, help="unknown clips per keyword clip")
    p.add_argument("--limit-per-label", type=int, help="use at most this many keyword clips per label and split (quick runs)")
    p.add_argument("--skip-bad-audio", action="store_true", help="skip unreadable files and count them in the report")
    p.add_argument("--test-set", type=Path, help="also evaluate on a canonical test set (speech_commands_test_set_v0.02)")
    p.add_argument("--firmware-dir", type=Path, default=REPO_ROOT / "firmware", help="PlatformIO project to export into")
    p.add_argument("--no-export", action="store_true", help="do not write into the firmware project")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("silence_share", "unknown_share"):
        if getattr(args, name) < 0:  # above 1 is fine: a wake word wants more negatives than keywords
            p.error(f"--{name.replace('_', '-')} must not be negative")
    return args


def fit(arch, labels, splits, noises, cfg: FeatureConfig, train_cfg: TrainConfig, run_dir: Path, feature_cache: Path):
    """Train on freshly augmented audio each epoch; keep the best-validation checkpoint in RUN/model_float.keras."""
    import keras  # imported late: argument and data errors should not wait for TensorFlow

    from training.model import build_model

    keras.utils.set_random_seed(train_cfg.seed)
    train = splits["training"]
    val_x = cached_mfcc(to_float(splits["validation"].audio), cfg, feature_cache)[..., np.newaxis]

    class AugmentedEpochs(keras.utils.PyDataset):
        """Training batches whose augmentation is drawn afresh each epoch from (seed, epoch)."""

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

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.monotonic() - self.start)

    batches = AugmentedEpochs()
    model = build_model(arch, len(labels), cfg)
    schedule = keras.optimizers.schedules.CosineDecay(train_cfg.learning_rate, train_cfg.epochs * len(batches), alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary(print_fn=lambda line, **_: print(line))
    timer = EpochTimer()
    history = model.fit(
        batches, epochs=train_cfg.epochs, validation_data=(val_x, splits["validation"].labels), verbose=2,
        callbacks=[keras.callbacks.ModelCheckpoint(run_dir / "model_float.keras", monitor="val_accuracy", save_best_only=True), timer],
    )
    best = int(np.argmax(history.history["val_accuracy"]))
    return model, {
        "best_epoch": best + 1,
        "best_val_accuracy": float(history.history["val_accuracy"][best]),
        "seconds_per_epoch": float(np.mean(timer.seconds)),
        "train_seconds": float(np.sum(timer.seconds)),
    }


def quantize_and_verify(arch, labels, splits, cfg: FeatureConfig, seed: int, run_dir: Path, feature_cache: Path) -> dict:
    """Full-int8 model of the best checkpoint, stripped, with its arena and the proof that stripping changed nothing."""
    import keras

    from training import quantize
    from training.model import build_model, multiply_accumulates

    # Converted from a batch-1 copy, so every tensor shape is static.
    deployable = build_model(arch, len(labels), cfg, batch_size=1)
    deployable.set_weights(keras.models.load_model(run_dir / "model_float.keras").get_weights())
    clean_train = cached_mfcc(to_float(splits["training"].audio), cfg, feature_cache)
    rng = np.random.default_rng(seed)
    representative = clean_train[rng.choice(len(clean_train), min(500, len(clean_train)), replace=False)]
    converted = quantize.convert_int8(deployable, representative)
    model_bytes = quantize.strip(converted)
    (run_dir / "model_int8.tflite").write_bytes(model_bytes)
    io = quantize.io_quantization(model_bytes)
    test_features = cached_mfcc(to_float(splits["testing"].audio), cfg, feature_cache)
    test_inputs = quantize_features(test_features, io["input_scale"], io["input_zero_point"])
    arena = quantize.smallest_arena(model_bytes, test_inputs)
    ops = quantize.model_ops(model_bytes)
    strip_safe = np.array_equal(quantize.run_tflm(converted, test_inputs, arena), quantize.run_tflm(model_bytes, test_inputs, arena))
    return {
        "model_bytes": model_bytes,
        "io": io,
        "arena": arena,
        "ops": ops,
        "figures": {
            "parameters": int(deployable.count_params()),
            **quantize.weight_bytes(model_bytes),
            "tflite_bytes": len(model_bytes),
            "tflite_bytes_before_strip": len(converted),
            "strip_keeps_tflm_outputs": bool(strip_safe),
            "multiply_accumulates": multiply_accumulates(deployable),
            "ops": ops,
        },
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    cfg = FeatureConfig()
    train_cfg = replace(
        TrainConfig(), epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        seed=args.seed, silence_share=args.silence_share, unknown_share=args.unknown_share,
    )
    run_dir = args.out or REPO_ROOT / "build" / f"{args.preset}-{args.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    feature_cache = args.cache_dir / "features"
    try:  # every check on the user's data happens here, before TensorFlow starts
        labels = labels_for(args.preset, args.keywords)
        data_dir = resolve_data_dir(args.data_dir, args.dataset_version, args.cache_dir)
        print(f"loading {data_dir} ({args.preset}: {', '.join(labels)})", flush=True)
        splits, noises = load_dataset(
            data_dir, labels, cfg, train_cfg.silence_share, train_cfg.unknown_share, train_cfg.seed,
            args.skip_bad_audio, limit_per_label=args.limit_per_label,
        )
        test_set = load_test_set(args.test_set, labels, cfg, args.skip_bad_audio) if args.test_set else None
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for split, clips in splits.items():
        print(f"  {split:>10}: {len(clips)} clips {clips.counts(labels)}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)

    t = time.monotonic()
    for split in ("training", "validation", "testing"):  # clean features, computed once and cached
        cached_mfcc(to_float(splits[split].audio), cfg, feature_cache)
    feature_seconds = time.monotonic() - t
    _, training = fit(args.arch, labels, splits, noises, cfg, train_cfg, run_dir, feature_cache)
    int8 = quantize_and_verify(args.arch, labels, splits, cfg, train_cfg.seed, run_dir, feature_cache)
    model_bytes, io, arena = int8["model_bytes"], int8["io"], int8["arena"]

    from training import evaluate, export

    print("evaluating the testing split under Keras, LiteRT and TFLM", flush=True)
    test = evaluate.evaluate(run_dir, model_bytes, splits["testing"], labels, cfg, io, arena, cache_dir=feature_cache)
    evaluate.save_confusion(test, labels, run_dir / "confusion.png")
    canonical = None
    if test_set is not None:
        canonical = evaluate.evaluate(run_dir, model_bytes, test_set, labels, cfg, io, arena, cache_dir=feature_cache)
        evaluate.save_confusion(canonical, labels, run_dir / "confusion_test_set.png")

    exported = []
    if not args.no_export:
        exported = export.export(args.firmware_dir, model_bytes, labels, io, int8["ops"], arena, cfg, DetectionConfig(), command)
    report = {
        "command": command,
        "preset": args.preset,
        "arch": args.arch,
        "labels": labels,
        "seed": train_cfg.seed,
        "features": cfg.to_dict(),
        "augment": asdict(train_cfg.augment),
        "training": {**{k: v for k, v in asdict(train_cfg).items() if k != "augment"}, **training, "feature_seconds": feature_seconds},
        "dataset": {
            "data_dir": str(data_dir),
            "silence_share": train_cfg.silence_share,
            "unknown_share": train_cfg.unknown_share,
            "limit_per_label": args.limit_per_label,
            "splits": {split: clips.counts(labels) for split, clips in splits.items()},
            "skipped_files": [msg for clips in splits.values() for msg in clips.skipped],
        },
        "model": int8["figures"],
        "quantization": io,
        "arena_bytes": arena,
        "tflm_equals_litert": test["tflm_equals_litert"],
        "test": test,
        "test_set": canonical,
        "exported": [str(p) for p in exported],
        "total_seconds": time.monotonic() - started,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    if exported and args.firmware_dir.resolve() == (REPO_ROOT / "firmware").resolve():
        # build/latest: the run whose model this repository's firmware now holds
        latest = REPO_ROOT / "build" / "latest"
        latest.parent.mkdir(exist_ok=True)
        latest.unlink(missing_ok=True)
        latest.symlink_to(run_dir.resolve())
    summarize(report, run_dir)
    if not test["tflm_equals_litert"]["identical"] or not int8["figures"]["strip_keeps_tflm_outputs"]:
        print("error: TFLM outputs differ from LiteRT's reference kernels or from the unstripped model", file=sys.stderr)
        return 1
    return 0


def summarize(report: dict, run_dir: Path) -> None:
    m, accuracies = report["model"], report["test"]["engines"]
    print(f"\n{report['arch']} ({report['preset']}), run folder {run_dir}")
    print(f"  parameters {m['parameters']:,}, int8 weights {m['int8_weight_bytes']:,} B, "
          f".tflite {m['tflite_bytes']:,} B, arena {report['arena_bytes']:,} B, {m['multiply_accumulates']:,} MACs")
    print("  test accuracy: " + ", ".join(f"{e} {100 * r['accuracy']:.2f}%" for e, r in accuracies.items())
          + f" (n={report['test']['n']})")
    print(f"  TFLM output identical to LiteRT: {report['tflm_equals_litert']['identical']}")
    if report["test_set"]:
        print(f"  canonical test set: {100 * report['test_set']['accuracy']:.2f}% (n={report['test_set']['n']})")
    for path in report["exported"]:
        print(f"  exported {path}")
    print(f"  total {report['total_seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
