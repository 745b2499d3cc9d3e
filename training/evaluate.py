"""Accuracy of a trained model under Keras (float), LiteRT (int8) and TensorFlow Lite Micro.

    python -m training.evaluate --model RUN/model_int8.tflite --data-dir DIR      # the testing split
    python -m training.evaluate --model RUN/model_int8.tflite --test-set DIR      # canonical test-set layout
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.config import FeatureConfig
from training.data import Clips, DataError, load_dataset, load_test_set, to_float
from training.features import cached_mfcc, quantize

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


def engine_outputs(engine: str, run_dir: Path, model_bytes: bytes, features: np.ndarray, io: dict, arena: int) -> np.ndarray:
    """Raw outputs (float probabilities, or int8) of one engine for float features (n, frames, coefficients)."""
    from training import quantize as q  # TensorFlow is slow to import; only evaluation needs it

    if engine == "float":
        import keras

        model = keras.models.load_model(run_dir / "model_float.keras")
        return model.predict(features[..., np.newaxis], batch_size=256, verbose=0)
    inputs = quantize(features, io["input_scale"], io["input_zero_point"])
    return q.run_litert(model_bytes, inputs) if engine == "int8" else q.run_tflm(model_bytes, inputs, arena)


def evaluate(
    run_dir: Path, model_bytes: bytes, clips: Clips, labels: list[str], cfg: FeatureConfig, io: dict, arena: int,
    engines=ENGINES, cache_dir: Path | None = None,
) -> dict:
    """Scores of each engine; where int8 and tflm both ran, whether their outputs are bit-identical."""
    features = cached_mfcc(to_float(clips.audio), cfg, cache_dir)
    outputs = {engine: engine_outputs(engine, run_dir, model_bytes, features, io, arena) for engine in engines}
    results = {engine: scores(clips.labels, np.argmax(out, axis=1), labels) for engine, out in outputs.items()}
    primary = PRIMARY_ENGINE if PRIMARY_ENGINE in results else engines[-1]
    result = {**results[primary], "engine": primary, "engines": results, "skipped_files": clips.skipped}
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="RUN/model_int8.tflite (report.json beside it)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, help="dataset in the official layout: its testing split is used")
    source.add_argument("--test-set", type=Path, help="Google's canonical test-set layout (one folder per label)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of float,int8,tflm")
    parser.add_argument("--skip-bad-audio", action="store_true", help="skip unreadable files and count them")
    parser.add_argument("--out", type=Path, help="folder for confusion.png and evaluation.json (default: the model's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    args = parser.parse_args(argv)
    try:
        run_dir = args.model.parent
        report_path = run_dir / "report.json"
        if not args.model.is_file():
            raise DataError(f"model {args.model} does not exist")
        if not report_path.is_file():
            raise DataError(f"{report_path} is missing: evaluate needs the labels and features of the training run")
        report = json.loads(report_path.read_text())
        engines = tuple(e for e in args.engines.split(",") if e)
        unknown = [e for e in engines if e not in ENGINES]
        if unknown or not engines:
            raise DataError(f"unknown engine(s) {unknown}: choose from {', '.join(ENGINES)}")
        labels, cfg = report["labels"], FeatureConfig(**{k: v for k, v in report["features"].items() if k != "n_frames"})
        if args.test_set:
            clips = load_test_set(args.test_set, labels, cfg, args.skip_bad_audio)
        else:
            shares = report["dataset"]
            clips = load_dataset(args.data_dir, labels, cfg, shares["silence_share"], shares["unknown_share"],
                                 report["seed"], args.skip_bad_audio, splits=("testing",),
                                 limit_per_label=shares["limit_per_label"])[0]["testing"]
        result = evaluate(run_dir, args.model.read_bytes(), clips, labels, cfg, report["quantization"],
                          report["arena_bytes"], engines)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = args.out or run_dir
    out.mkdir(parents=True, exist_ok=True)
    result["source"] = str(args.test_set or args.data_dir)
    save_confusion(result, labels, out / "confusion.png")
    (out / "evaluation.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        for engine, r in result["engines"].items():
            print(f"{engine:>5}: {100 * r['accuracy']:6.2f}% of {r['n']}")
        print(f"confusion matrix: {out / 'confusion.png'}, {out / 'evaluation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
