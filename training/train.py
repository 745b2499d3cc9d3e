"""Train a keyword spotter end to end: data -> MFCC -> Keras -> int8 -> TFLM check -> calibration -> export.

    python -m training.train --data-dir DIR --preset kws12 --arch dscnn --out build/kws12-dscnn
    python -m training.train --data-dir DIR --keywords yes --negatives DIR ...       # a wake word

Without --data-dir (or $KWS_DATA_DIR) Speech Commands is downloaded into data/. Audio is decoded once into an on-disk
cache (--cache-dir) and read from it a batch at a time. A wake word trains on windows as the device sees them in a
stream, with hard negatives mined as it goes, and its operating point is calibrated on a validation stream
(training/calibrate.py). Writes RUN/model_float.keras, RUN/model_int8.tflite, RUN/report.json (with the model's
manifest, training/artifact.py), RUN/confusion.png and, unless --no-export, the manifest, the model and the generated
C sources into the firmware project. The run folder appears only when the run is complete.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from training import run_folder
from training.config import (ARCHITECTURES, PRESETS, UNKNOWN, AppConfig, DetectionConfig, FeatureConfig, TrainConfig,
                             is_keyword, labels_for, with_overrides)
from training.data import DataError
from training.download import DEFAULT_CACHE_DIR, REPO_ROOT, resolve_data_dir
from training.tts_engines import ENGINES, TRAINING_ENGINES

MIN_KEYWORD_CLIPS = 100  # fewer training clips of a keyword than this rarely make a usable model


def parse_args(argv=None) -> argparse.Namespace:
    defaults = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="Speech Commands in the official layout (default: $KWS_DATA_DIR, else download)")
    p.add_argument("--dataset-version", default="v0.02", choices=("v0.02", "v0.01"), help="what to download")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="downloads, audio and feature caches (data/)")
    p.add_argument("--preset", default="wakeword", choices=PRESETS)
    p.add_argument("--keywords", nargs="+", help="wakeword preset: the keyword(s) (default: marvin)")
    p.add_argument("--negatives", type=Path, action="append", default=[], help="a folder of audio without any keyword "
                   "(repeatable): its training share is mined for hard negatives, its validation share calibrates")
    p.add_argument("--arch", default="dscnn", choices=ARCHITECTURES)
    p.add_argument("--out", type=Path, help="run folder (default: a new build/PRESET-ARCH-TIME; build/latest links to "
                                            "the run last exported to firmware/)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder (only once this run completes)")
    p.add_argument("--epochs", type=int, help=f"default: about {defaults.examples:,} examples' worth, "
                                              f"{defaults.min_epochs}-{defaults.max_epochs} epochs")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--silence-share", type=float, default=defaults.silence_share, help="silence clips per keyword clip")
    p.add_argument("--unknown-share", type=float, default=defaults.unknown_share, help="unknown clips per keyword clip")
    p.add_argument("--synthetic-positives", type=int, default=0, metavar="N", help="add N text-to-speech clips of each keyword "
                   "(training.synthesize, made once into --cache-dir) to training and validation (one in five), never testing")
    p.add_argument("--synthetic-engines", nargs="+", default=list(TRAINING_ENGINES), choices=ENGINES, metavar="ENGINE", help=
                   f"where those come from, if all installed ({', '.join(ENGINES)}; default {' '.join(TRAINING_ENGINES)}, measured in the README)")
    p.add_argument("--near-misses", type=int, default=0, metavar="N", help="with --synthetic-positives: N clips of phrases "
                   "that sound close to each keyword, as unknown (default none: they cost misses of recordings, README)")
    p.add_argument("--synthetic-others", type=int, default=0, metavar="N", help="with --synthetic-positives: N clips of "
                   "Speech Commands' other words as unknown, so that a synthetic voice is no cue for the keyword (default none)")
    p.add_argument("--recording-share", type=float, default=defaults.recording_share, help="with --synthetic-positives: "
                   "the least share of a keyword's training rows its recordings fill, repeated (default %(default)s)")
    p.add_argument("--no-real-positives", action="store_true", help="train and validate on synthetic keyword clips "
                   "alone (the test split keeps the recordings, so the figures say how well that works)")
    p.add_argument("--dry-synthetic", action="store_true", help="give synthetic clips no room and microphone "
                   "(training/acoustics.py), for comparison")
    p.add_argument("--init-from", type=Path, metavar="RUN", help="start from the weights of another run of the same "
                   "--arch (RUN/model_float.keras, e.g. one trained on many words), all but its classifier")
    p.add_argument("--freeze-loaded", action="store_true", help="with --init-from: train only its last block and the classifier")
    p.add_argument("--clip-training", action="store_true", help="wakeword preset: train on whole clips, not stream "
                   "windows, and mine no hard negatives (the kws12 preset always does)")
    p.add_argument("--mining-rounds", type=int, default=TrainConfig().stream.mining_rounds, help="wakeword preset: "
                   "rounds of hard-negative mining during training (0: none; training/mining.py)")
    p.add_argument("--target-fa-per-hour", type=float, default=1.0, help="wakeword preset: the false-accept rate the "
                   "operating point is calibrated for on the validation stream (default 1 an hour)")
    p.add_argument("--validation-minutes", type=float, default=30.0, help="wakeword preset: length of the validation "
                   "stream the operating point is chosen on (default 30)")
    p.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                   help="processes making training batches: augmentation and MFCC (default: one per core)")
    p.add_argument("--limit-per-label", type=int, help="use at most this many keyword clips per label and split (quick runs)")
    p.add_argument("--skip-bad-audio", action="store_true", help="skip unreadable files and count them in the report")
    p.add_argument("--test-set", type=Path, help="also evaluate on a canonical test set (speech_commands_test_set_v0.02)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.NAME=VALUE",
                   help="a detection or device setting exported with the model, e.g. detection.suppression_ms=2000 "
                        "or app.inference_every_hops=5 (repeatable; training/config.py)")
    p.add_argument("--firmware-dir", type=Path, default=REPO_ROOT / "firmware", help="PlatformIO project to export into")
    p.add_argument("--no-export", action="store_true", help="do not write into the firmware project")
    return check_args(p, p.parse_args(argv))


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    for name in ("epochs", "batch_size", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("synthetic_positives", "near_misses", "synthetic_others", "mining_rounds"):
        if (getattr(args, name) or 0) < 0:
            p.error(f"--{name.replace('_', '-')} must be a whole number >= 0")
    try:
        if args.init_from:
            run_folder.check_base(args.init_from, args.arch, (FeatureConfig().n_frames, FeatureConfig().n_mfcc, 1))
    except run_folder.RunFolderError as error:
        p.error(f"--init-from {error}")
    if args.freeze_loaded and not args.init_from:
        p.error("--freeze-loaded needs --init-from RUN")
    if (args.no_real_positives or args.near_misses or args.synthetic_others) and not args.synthetic_positives:
        p.error("--no-real-positives, --near-misses and --synthetic-others need --synthetic-positives N")
    for name in ("learning_rate", "target_fa_per_hour", "validation_minutes", "silence_share", "unknown_share", "recording_share"):
        value, share = getattr(args, name), name.endswith("_share")  # a share may be 0, or above 1: more negatives
        if not (math.isfinite(value) and (value >= 0 if share else value > 0)):
            p.error(f"--{name.replace('_', '-')} must be a {'number >= 0' if share else 'positive number'}, not {value}")
    return args


def streaming(args) -> bool:
    return args.preset == "wakeword" and not args.clip_training


def load(args, labels, cfg: FeatureConfig, train_cfg: TrainConfig):
    """Every check on the user's data, before TensorFlow starts: (dataset, canonical test set or None)."""
    from training.dataset import load_dataset, load_test_set

    data_dir = resolve_data_dir(args.data_dir, args.dataset_version, args.cache_dir)
    started = time.monotonic()
    print(f"loading {data_dir} ({args.preset}: {', '.join(labels)})", flush=True)
    splits = ("training", "validation", "testing", *(("mining",) if streaming(args) else ()))
    dataset = load_dataset(data_dir, labels, cfg, args.cache_dir, train_cfg.silence_share, train_cfg.unknown_share,
                           train_cfg.seed, args.skip_bad_audio, splits, args.limit_per_label, args.negatives,
                           synthetic_folders(args, labels), not args.no_real_positives, train_cfg.silence_dbfs)
    test_set = (load_test_set(args.test_set, labels, cfg, args.cache_dir, dataset.bank, args.skip_bad_audio)
                if args.test_set else None)
    for split, clips in dataset.splits.items():
        print(f"  {split:>10}: {len(clips):,} clips {clips.counts(labels)}", flush=True)
    print(f"data ready in {time.monotonic() - started:.1f} s", flush=True)
    counts = dataset.splits["training"].counts(labels)
    for keyword in (label for label in labels if is_keyword(label) and counts[label] < MIN_KEYWORD_CLIPS):
        print(f"warning: only {counts[keyword]} training clips of {keyword!r} (fewer than {MIN_KEYWORD_CLIPS}): expect "
              "a weak model; add recordings of it to its word folder, or synthetic ones (--synthetic-positives, "
              "python -m training.synthesize)", flush=True)
    return data_dir, dataset, test_set


def synthetic_folders(args, labels) -> list[Path]:
    """--synthetic-positives: each keyword's synthetic clips, its near misses' and other words', made once (cached)."""
    if not args.synthetic_positives:
        return []
    from training.synthesize import SynthesisError
    from training.synthetic_sets import engines_for_training, for_training, others_for_training

    keywords, engines = list(filter(is_keyword, labels)), engines_for_training(tuple(args.synthetic_engines), sys.stdout)
    make = dict(cache_dir=args.cache_dir, jobs=args.workers, engines=engines, log=sys.stdout)
    try:
        return [*(folder for keyword in keywords for folder in
                  for_training(keyword, args.synthetic_positives, args.near_misses, **make)),
                *([others_for_training(keywords, args.synthetic_others, **make)] if args.synthetic_others else [])]
    except SynthesisError as error:
        raise DataError(f"--synthetic-positives: {error}") from None


def epoch_rows(args, labels, dataset, train_cfg: TrainConfig):
    """The training rows of every epoch, with hard-negative slots drawn from the mining pool (streaming)."""
    from training.batches import EpochRows

    mask = np.array([is_keyword(label) for label in labels])
    train = dataset.splits["training"]
    if not streaming(args):
        return EpochRows(train, None, 0, labels.index(UNKNOWN), mask, False, 1, train_cfg.recording_share)
    slots = math.ceil(train_cfg.stream.hard_negative_share * mask[train.labels].sum())
    print(f"mining pool: {len(dataset.splits['mining']):,} negative clips; {slots:,} hard-negative slots an epoch",
          flush=True)
    return EpochRows(train, dataset.splits["mining"].audio, slots, labels.index(UNKNOWN), mask, True,
                     train_cfg.stream.keyword_repeats, train_cfg.recording_share)


def fit(args, labels, dataset, cfg: FeatureConfig, train_cfg: TrainConfig, run_dir: Path):
    """Train on freshly augmented batches each epoch; keep the best-validation checkpoint in RUN/model_float.keras.
    Returns (the last epoch's weights, training figures)."""
    from training.batches import training_batches
    from training.mining import mining_callback, mining_epochs
    from training.model import build_model, keras, warm_start
    from training.progress import progress_callback

    keras.utils.set_random_seed(train_cfg.seed)
    rows = epoch_rows(args, labels, dataset, train_cfg)
    epochs = train_cfg.epochs_for(len(rows))
    batches = training_batches(rows, dataset.bank, train_cfg, cfg, args.workers)
    validation = (dataset.features("validation")[..., np.newaxis], dataset.splits["validation"].labels)
    model = build_model(args.arch, len(labels), cfg)
    if args.init_from:
        print(warm_start(model, args.init_from, args.freeze_loaded), flush=True)
    schedule = keras.optimizers.schedules.CosineDecay(train_cfg.learning_rate, epochs * len(batches), alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=[])
    seconds, rounds = [], []
    callbacks = [keras.callbacks.ModelCheckpoint(run_dir / "model_float.keras", monitor="val_accuracy", save_best_only=True),
                 keras.callbacks.TerminateOnNaN(), progress_callback(keras, epochs, seconds)]
    if rows.pool is not None:
        callbacks.append(mining_callback(rows, cfg, train_cfg.stream, train_cfg.seed,
                                         mining_epochs(epochs, train_cfg.stream.mining_rounds), rounds))
    print(f"training {args.arch}: {epochs} epochs of {len(rows):,} rows in {len(batches)} batches", flush=True)
    history = model.fit(batches, epochs=epochs, validation_data=validation, verbose=0, callbacks=callbacks)
    accuracy = np.nan_to_num(history.history["val_accuracy"], nan=-1)
    best = int(np.argmax(accuracy))
    return model.get_weights(), {
        "epochs": epochs, "rows_per_epoch": len(rows), "best_epoch": best + 1,
        "best_val_accuracy": float(history.history["val_accuracy"][best]), "seconds_per_epoch": float(np.mean(seconds)),
        "train_seconds": float(np.sum(seconds)), "mining": [asdict(r) for r in rounds], "stream_windows": streaming(args)}


def candidates(args, labels, dataset, cfg: FeatureConfig, train_cfg: TrainConfig, last_weights, run_dir: Path,
               settings: dict) -> dict:
    """Full-int8 models, as manifests with their bytes, of the best-validation checkpoint and (a wake word,
    where calibration picks between them) the last epoch's weights: {name: (Artifact, figures)}."""
    from training import quantize
    from training.artifact import Artifact, build_manifest
    from training.model import keras

    checkpoint = run_dir / "model_float.keras"
    if not checkpoint.is_file():
        raise DataError("training produced no checkpoint: the loss was not a number from the first epoch "
                        "(lower --learning-rate, check the data)")
    train = dataset.splits["training"]
    rng = np.random.default_rng(train_cfg.seed)
    representative = dataset.features("training", np.sort(rng.choice(len(train), min(500, len(train)), replace=False)))
    test_features = dataset.features("testing")
    weights = {"best": keras.models.load_model(checkpoint).get_weights()}
    if args.preset == "wakeword":
        weights["last"] = last_weights
    result = {}
    for name, values in weights.items():
        print(f"quantizing the {name} weights to full int8", flush=True)
        int8 = quantize.deployable_int8(args.arch, len(labels), values, cfg, representative, test_features)
        manifest = build_manifest(int8["model_bytes"], labels, cfg, settings["detection"], settings["app"], int8["arena"])
        result[name] = (Artifact(manifest, int8["model_bytes"], run_dir), int8["figures"])
    return result


def calibrate_run(args, data_dir: Path, dataset, models: dict, run_dir: Path) -> tuple[str, dict | None]:
    """(the chosen candidate, the calibration report): a wake word's operating point from the validation stream
    (its keywords: the validation split's clips of the first keyword); the best checkpoint with the exported
    defaults otherwise."""
    if args.preset != "wakeword":
        return "best", None
    from training.calibrate import calibrate, validation_audio

    keywords = list(models["best"][0].manifest.keywords)
    validation = dataset.splits["validation"]
    clips = [Path(source) for source, label in zip(validation.sources, validation.labels)
             if models["best"][0].manifest.labels[label] == keywords[0]]
    audio = validation_audio(data_dir, keywords, args.negatives, run_dir, args.seed, args.validation_minutes, clips)
    stream = audio.description
    print(f"calibrating on the validation stream ({stream['seconds'] / 60:.1f} min, {stream['keywords']} keywords) and "
          f"{stream['negative_files']:,} validation negatives for {args.target_fa_per_hour:g} false accepts an hour",
          flush=True)
    result = calibrate({name: artifact for name, (artifact, _) in models.items()}, audio, args.target_fa_per_hour)
    print(f"  operating point: the {result['candidate']} weights at {result['described']}: validation FRR "
          f"{100 * result['point']['frr']:.1f}%, {result['point']['false_alarms']} false accepts", flush=True)
    if not result["met"]:
        print(f"warning: no setting keeps to {args.target_fa_per_hour:g} false accepts an hour on the validation stream; "
              "exported the one with the fewest (train longer, add negatives, or ask for a higher "
              "--target-fa-per-hour)", flush=True)
    return result["candidate"], {**result, "target_fa_per_hour": args.target_fa_per_hour, "stream": stream}


def evaluate_run(run_dir: Path, artifact, dataset, test_set) -> tuple[dict, dict | None]:
    """Test-split (and canonical test set) accuracy under Keras, LiteRT and TFLM, with confusion matrices."""
    from training import evaluate

    labels = list(artifact.manifest.labels)
    print(f"evaluating {len(dataset.splits['testing']):,} test clips under Keras, LiteRT and TFLM", flush=True)
    test = evaluate.evaluate(run_dir, artifact, dataset.features("testing"), dataset.splits["testing"])
    evaluate.save_confusion(test, labels, run_dir / "confusion.png")
    canonical = None
    if test_set is not None:
        canonical = evaluate.evaluate(run_dir, artifact, test_set.features("testing"), test_set.splits["testing"])
        evaluate.save_confusion(canonical, labels, run_dir / "confusion_test_set.png")
    return test, canonical


def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python -m training.train " + shlex.join(sys.argv[1:] if argv is None else list(map(str, argv)))
    started = time.monotonic()
    train_cfg = replace(TrainConfig(), epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                        seed=args.seed, silence_share=args.silence_share, unknown_share=args.unknown_share,
                        recording_share=args.recording_share,
                        stream=replace(TrainConfig().stream, enabled=streaming(args), mining_rounds=args.mining_rounds),
                        acoustics=None if args.dry_synthetic else TrainConfig().acoustics)
    run_dir = args.out or REPO_ROOT / "build" / f"{args.preset}-{args.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        labels = labels_for(args.preset, args.keywords)
        settings = with_overrides({"detection": DetectionConfig(), "app": AppConfig()}, args.settings)
        settings["detection"].check()
        settings["app"].check()
        run_folder.check_free(run_dir, args.overwrite)
        run_folder.require_writable(args.cache_dir, f"--cache-dir {args.cache_dir}")
        data_dir, dataset, test_set = load(args, labels, FeatureConfig(), train_cfg)
        with run_folder.writing(run_dir, args.overwrite) as scratch:
            report = train_in(scratch, args, labels, train_cfg, settings, data_dir, dataset, test_set, command)
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


def train_in(scratch: Path, args, labels, train_cfg: TrainConfig, settings: dict, data_dir: Path, dataset, test_set,
             command: str) -> dict:
    """Train, quantize, calibrate, check and evaluate into the run's scratch folder; returns the report it wrote."""
    from training.calibrate import detection_of

    started, cfg = time.monotonic(), FeatureConfig()
    last_weights, training = fit(args, labels, dataset, cfg, train_cfg, scratch)
    models = candidates(args, labels, dataset, cfg, train_cfg, last_weights, scratch, settings)
    chosen, calibration = calibrate_run(args, data_dir, dataset, models, scratch)
    artifact, figures = models[chosen]
    if chosen == "last":  # the float model beside the int8 one is the one exported
        from training.model import build_model

        model = build_model(args.arch, len(labels), cfg)
        model.set_weights(last_weights)
        model.save(scratch / "model_float.keras")
    if calibration is not None:
        manifest = artifact.manifest.with_settings(detection=detection_of(calibration["point"], artifact.manifest.detection))
        artifact = replace(artifact, manifest=manifest)
    (scratch / "model_int8.tflite").write_bytes(artifact.model)
    test, canonical = evaluate_run(scratch, artifact, dataset, test_set)
    report = {
        "command": command, "preset": args.preset, "arch": args.arch, "seed": train_cfg.seed,
        "manifest": artifact.manifest.to_dict(), "augment": asdict(train_cfg.augment), "stream": asdict(train_cfg.stream),
        "training": {**{k: v for k, v in asdict(train_cfg).items() if k not in ("augment", "stream")}, **training,
                     "weights": chosen},
        "dataset": {"data_dir": str(data_dir), "negatives": [str(n) for n in args.negatives],
                    "silence_share": train_cfg.silence_share, "silence_dbfs": train_cfg.silence_dbfs,
                    "unknown_share": train_cfg.unknown_share, "limit_per_label": args.limit_per_label,
                    "synthetic_positives": args.synthetic_positives, "near_misses": args.near_misses,
                    "synthetic_others": args.synthetic_others, "real_positives": not args.no_real_positives,
                    "synthetic_engines": args.synthetic_engines,
                    "synthetic_clips": {split: int(clips.synthetic.sum()) for split, clips in dataset.splits.items()},
                    "splits": {split: clips.counts(labels) for split, clips in dataset.splits.items()},
                    "skipped_files": sorted({m for clips in dataset.splits.values() for m in clips.skipped})},
        "model": figures, "calibration": calibration, "tflm_equals_litert": test["tflm_equals_litert"], "test": test,
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
    if report["calibration"]:
        print(f"  operating point ({report['calibration']['candidate']} weights): {report['calibration']['described']}")
    for path in exported:
        print(f"  exported {path}")
    print(f"  total {total_seconds:.0f} s")


if __name__ == "__main__":
    code = main()
    if code == 130:  # interrupted, cleaned up: skip multiprocessing's exit handler, which can hang on the batch workers'
        for stream in (sys.stdout, sys.stderr):  # pool (an idle worker holds its queue's lock; seen in CI)
            stream.flush()
        os._exit(code)
    sys.exit(code)
