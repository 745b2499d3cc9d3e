"""Accuracy of a trained model under Keras (float), LiteRT (int8) and TensorFlow Lite Micro.

    python -m training.evaluate --model RUN --data-dir DIR      # the testing split
    python -m training.evaluate --model RUN --test-set DIR      # canonical test-set layout

RUN is a run folder (or its model_int8.tflite); a generated folder (firmware/src/generated) works too,
without the float engine, which needs the run's model_float.keras.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.artifact import Artifact, ArtifactError, load_artifact
from training.config import TrainConfig
from training.data import DataError
from training.download import DEFAULT_CACHE_DIR
from training.features import quantize

ENGINES = ("float", "int8", "tflm")
PRIMARY_ENGINE = "tflm"  # what the device runs


def scores(truth: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    confusion = np.zeros((len(labels), len(labels)), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {
        label: {"accuracy": float(confusion[i, i] / max(confusion[i].sum(), 1)), "n": int(confusion[i].sum())}
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": float(np.mean(truth == predicted)),
        "n": int(len(truth)),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def engine_outputs(engine: str, run_dir: Path, artifact: Artifact, features: np.ndarray) -> np.ndarray:
    """Raw outputs (float probabilities, or int8) of one engine for float features (n, frames, coefficients)."""
    from training import quantize as q  # TensorFlow is slow to import; only evaluation needs it

    if engine == "float":
        from training.model import keras

        model = keras.models.load_model(run_dir / "model_float.keras")
        return model.predict(features[..., np.newaxis], batch_size=256, verbose=0)
    manifest = artifact.manifest
    inputs = quantize(features, manifest.input.scale, manifest.input.zero_point)
    return q.run_litert(artifact.model, inputs) if engine == "int8" else q.run_tflm(artifact.model, inputs, manifest.arena_bytes)


def evaluate(run_dir: Path, artifact: Artifact, features: np.ndarray, split, engines=ENGINES) -> dict:
    """Scores of each engine on `features` (float, (n, frames, coefficients)) of a split (training.dataset.Split:
    its labels and skipped files); where int8 and tflm both ran, whether their outputs are bit-identical."""
    labels = list(artifact.manifest.labels)
    outputs = {engine: engine_outputs(engine, run_dir, artifact, features) for engine in engines}
    results = {engine: scores(split.labels, np.argmax(out, axis=1), labels) for engine, out in outputs.items()}
    primary = PRIMARY_ENGINE if PRIMARY_ENGINE in results else engines[-1]
    result = {**results[primary], "engine": primary, "engines": results, "skipped_files": split.skipped}
    if "int8" in outputs and "tflm" in outputs:
        differing = np.any(outputs["int8"] != outputs["tflm"], axis=1)
        result["tflm_equals_litert"] = {"identical": not differing.any(), "differing_clips": int(differing.sum())}
    return result


def save_confusion(result: dict, labels: list[str], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.array(result["confusion"])
    fig, ax = plt.subplots(figsize=(1 + 0.55 * len(labels), 1 + 0.5 * len(labels)))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), count in np.ndenumerate(confusion):
        if count:
            ax.text(j, i, count, ha="center", va="center", color="white" if count > confusion.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result['engine']}: accuracy {100 * result['accuracy']:.2f}% of {result['n']}")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def features_and_split(args, artifact: Artifact):
    """(features, split) to score: a canonical test set, or the run's own testing split (the same picks as training)."""
    from training.augment import NoiseBank
    from training.dataset import load_dataset, load_test_set

    manifest = artifact.manifest
    if args.test_set:
        noise = NoiseBank.of([np.zeros(manifest.features.clip_samples, np.float32)])  # a test set has no silence draws
        dataset = load_test_set(args.test_set, list(manifest.labels), manifest.features, args.cache_dir, noise,
                                args.skip_bad_audio)
    else:
        report = json.loads((artifact.source / "report.json").read_text())
        shares = report["dataset"]
        dataset = load_dataset(args.data_dir, list(manifest.labels), manifest.features, args.cache_dir,
                               shares["silence_share"], shares["unknown_share"], report["seed"], args.skip_bad_audio,
                               ("testing",), shares["limit_per_label"], [Path(n) for n in shares.get("negatives", [])],
                               silence_dbfs=tuple(shares.get("silence_dbfs", TrainConfig.silence_dbfs)))
    return dataset.features("testing"), dataset.splits["testing"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="a run folder, its model_int8.tflite, or a generated folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="dataset in the official layout: the run's testing split is used")
    source.add_argument("--test-set", type=Path, help="Google's canonical test-set layout (one folder per label)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of float,int8,tflm")
    parser.add_argument("--skip-bad-audio", action="store_true", help="skip unreadable files and count them")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="audio and feature caches (data/)")
    parser.add_argument("--out", type=Path, help="folder for confusion.png and evaluation.json (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    args = parser.parse_args(argv)
    try:
        artifact = load_artifact(args.model)
        run_dir = artifact.source
        engines = tuple(e for e in args.engines.split(",") if e)
        unknown = [e for e in engines if e not in ENGINES]
        if unknown or not engines:
            raise DataError(f"unknown engine(s) {unknown}: choose from {', '.join(ENGINES)}")
        if "float" in engines and not (run_dir / "model_float.keras").is_file():
            raise DataError(f"{run_dir} has no model_float.keras for the float engine: pass --engines int8,tflm")
        if args.data_dir and not (run_dir / "report.json").is_file():
            raise DataError(f"{run_dir} is not a run folder: its testing split is unknown; use --test-set")
        result = evaluate(run_dir, artifact, *features_and_split(args, artifact), engines)
        out = args.out or run_dir
        out.mkdir(parents=True, exist_ok=True)
        result["source"] = str(args.test_set or args.data_dir)
        save_confusion(result, list(artifact.manifest.labels), out / "confusion.png")
        (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    except (DataError, ArtifactError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        for engine, r in result["engines"].items():
            print(f"{engine:>5}: {100 * r['accuracy']:6.2f}% of {r['n']}")
        print(f"confusion matrix: {out / 'confusion.png'}, {out / 'evaluation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
