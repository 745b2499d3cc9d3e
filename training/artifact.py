"""The device contract: one manifest describes a deployable model, and one loader checks it.

A manifest holds everything the firmware, the simulator and the benchmarks must agree on: labels and
which are keywords, feature geometry, detection and device settings, the model's input and output
quantization, its arena, ops and SHA-256. `training.export` writes it twice from the same object, as
`kws_manifest.json` (read by every host tool) and as the C header `kws_settings.h`; `report.json`
embeds it. A model artifact is a manifest with its model bytes:

    artifact = load_artifact(Path("firmware/src/generated"))   # or a run folder, or its model_int8.tflite
    artifact.manifest.features.hop_samples, artifact.manifest.app.inference_every_hops, artifact.model

`load_artifact` is the only way host code learns a setting, and it checks the model's own bytes
against the manifest (size, SHA-256, tensor shapes, quantization, ops) before anything runs it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from training.config import AppConfig, DetectionConfig, FeatureConfig, check_label, is_keyword
from training.flatbuffer import ModelError, TensorSpec, inspect_model

FORMAT = 1
MANIFEST_FILE = "kws_manifest.json"
MODEL_FILE = "kws_model.tflite"  # beside the manifest in a generated folder
RUN_MODEL_FILE = "model_int8.tflite"  # in a run folder, whose report.json holds the manifest
REPO_ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_GENERATED_DIR = REPO_ROOT / "firmware" / "src" / "generated"  # what `make flash` builds


class ArtifactError(ValueError):
    """A model artifact that cannot be used, naming the file and what to do."""


@dataclass(frozen=True)
class Manifest:
    labels: tuple[str, ...]
    features: FeatureConfig
    detection: DetectionConfig
    app: AppConfig
    input: TensorSpec
    output: TensorSpec
    arena_bytes: int
    ops: tuple[str, ...]
    model_sha256: str
    model_bytes: int

    @property
    def keyword_mask(self) -> tuple[bool, ...]:
        return tuple(is_keyword(label) for label in self.labels)

    @property
    def keywords(self) -> tuple[str, ...]:
        return tuple(label for label in self.labels if is_keyword(label))

    def to_dict(self) -> dict:
        return {"format": FORMAT, "labels": list(self.labels), "keywords": list(self.keywords),
                "features": self.features.to_dict(), "detection": asdict(self.detection), "app": asdict(self.app),
                "input": self.input.to_dict(), "output": self.output.to_dict(), "arena_bytes": self.arena_bytes,
                "ops": list(self.ops), "model_sha256": self.model_sha256, "model_bytes": self.model_bytes}

    @classmethod
    def from_dict(cls, values: dict) -> Manifest:
        """The manifest a dict describes; ValueError naming the first missing, unknown or bad entry."""
        if values.get("format") != FORMAT:
            raise ValueError(f"manifest format {values.get('format')!r}: this code reads format {FORMAT}")
        unknown = set(values) - {f.name for f in fields(cls)} - {"format", "keywords", "generated_by"}
        if unknown:
            raise ValueError(f"manifest has unknown entries {sorted(unknown)}")
        try:
            manifest = cls(
                labels=tuple(map(check_label, values["labels"])),
                features=_config(FeatureConfig, {k: v for k, v in values["features"].items() if k != "n_frames"}),
                detection=_config(DetectionConfig, values["detection"]), app=_config(AppConfig, values["app"]),
                input=TensorSpec.from_dict(values["input"]), output=TensorSpec.from_dict(values["output"]),
                arena_bytes=int(values["arena_bytes"]), ops=tuple(values["ops"]),
                model_sha256=str(values["model_sha256"]), model_bytes=int(values["model_bytes"]))
        except KeyError as error:
            raise ValueError(f"manifest has no {error.args[0]!r} entry") from None
        except (TypeError, AttributeError) as error:
            raise ValueError(f"manifest entry of the wrong kind: {error}") from None
        manifest.detection.check()
        manifest.app.check()
        if list(values.get("keywords", manifest.keywords)) != list(manifest.keywords):
            raise ValueError(f"manifest keywords {values['keywords']} disagree with its labels {list(manifest.labels)}")
        return manifest

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: two manifests are the same contract exactly when this is equal."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def differences(self, other: Manifest) -> list[str]:
        """'section.name: ours -> theirs' for every entry that differs; how runs and builds are compared."""
        return _differences(self.to_dict(), other.to_dict())

    def with_settings(self, detection: DetectionConfig | None = None, app: AppConfig | None = None) -> Manifest:
        return replace(self, detection=detection or self.detection, app=app or self.app)


def _config(kind, values: dict):
    names = {f.name for f in fields(kind)}
    unknown, missing = set(values) - names, names - set(values)
    if unknown or missing:
        raise ValueError(f"{kind.__name__}: unknown {sorted(unknown)}, missing {sorted(missing)}")
    config = kind(**{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()})
    for field in fields(kind):  # JSON numbers come back as the type the dataclass declares
        declared = type(getattr(kind(), field.name))
        if declared in (int, float) and not isinstance(getattr(config, field.name), (int, float)):
            raise ValueError(f"{kind.__name__}.{field.name} must be a number, not {getattr(config, field.name)!r}")
    return config


def _differences(ours, theirs, path: str = "") -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [line for key in sorted(set(ours) | set(theirs))
                for line in _differences(ours.get(key), theirs.get(key), f"{path}.{key}" if path else key)]
    return [] if ours == theirs else [f"{path}: {ours!r} -> {theirs!r}"]


def check_model(manifest: Manifest, model: bytes, where: str) -> None:
    """The model's own bytes agree with the manifest; ArtifactError naming `where` otherwise."""
    digest = hashlib.sha256(model).hexdigest()
    if len(model) != manifest.model_bytes or digest != manifest.model_sha256:
        raise ArtifactError(f"{where}: the model ({len(model)} bytes, SHA-256 {digest[:16]}) is not the one its "
                            f"manifest describes ({manifest.model_bytes} bytes, {manifest.model_sha256[:16]}): "
                            "a mixed or damaged artifact; export the run again")
    try:
        info = inspect_model(model)
    except ModelError as error:
        raise ArtifactError(f"{where}: {error}") from None
    expected_input = (1, manifest.features.n_frames, manifest.features.n_mfcc, 1)
    problems = [f"{name} {found} != manifest {wanted}" for name, found, wanted in (
        ("input", info.input, manifest.input), ("output", info.output, manifest.output), ("ops", info.ops, manifest.ops))
        if found != wanted]
    if info.input.shape != expected_input or info.input.dtype != "int8":
        problems.append(f"input {info.input.dtype} {list(info.input.shape)}, features need int8 {list(expected_input)}")
    if info.output.shape != (1, len(manifest.labels)) or info.output.dtype != "int8":
        problems.append(f"output {info.output.dtype} {list(info.output.shape)}, {len(manifest.labels)} labels need "
                        f"int8 [1, {len(manifest.labels)}]")
    if info.float_weight_bytes:
        problems.append(f"it is not fully int8 ({info.float_weight_bytes:,} bytes of float weights: the converter fell "
                        "back to float, as it does for weights out of range, e.g. from a diverging run)")
    if problems:
        raise ArtifactError(f"{where}: the model does not fit its manifest: {'; '.join(problems)}")


def build_manifest(model: bytes, labels: list[str], features: FeatureConfig, detection: DetectionConfig,
                   app: AppConfig, arena_bytes: int) -> Manifest:
    """The manifest of a freshly quantized model: its facts are read from its own bytes."""
    info = inspect_model(model)
    manifest = Manifest(tuple(map(check_label, labels)), features, detection, app, info.input, info.output,
                        int(arena_bytes), info.ops, hashlib.sha256(model).hexdigest(), len(model))
    detection.check()
    app.check()
    check_model(manifest, model, "the quantized model")
    return manifest


@dataclass(frozen=True)
class Artifact:
    manifest: Manifest
    model: bytes
    source: Path  # the folder it was loaded from

    @property
    def name(self) -> str:
        return f"{self.source} (model {self.manifest.model_sha256[:16]})"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(f"{path}: cannot read it as JSON ({error}); export or train the model again") from None


def load_artifact(path: Path | str = FIRMWARE_GENERATED_DIR) -> Artifact:
    """A generated folder (kws_manifest.json + kws_model.tflite), a run folder (report.json's manifest +
    model_int8.tflite) or that .tflite file, checked; ArtifactError saying what is wrong and what to do."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if (folder / MANIFEST_FILE).is_file():
        manifest_path, values, model_path = folder / MANIFEST_FILE, _read_json(folder / MANIFEST_FILE), folder / MODEL_FILE
    elif (folder / "report.json").is_file():
        manifest_path = folder / "report.json"
        values, model_path = _read_json(manifest_path).get("manifest"), folder / RUN_MODEL_FILE
        if values is None:
            raise ArtifactError(f"{manifest_path} has no manifest: a run of an older version, or one that did not finish")
    elif not folder.exists():
        raise ArtifactError(f"{path} does not exist: give a run folder or a generated folder (firmware/src/generated)")
    else:
        raise ArtifactError(f"{folder} has neither {MANIFEST_FILE} nor report.json: not a model artifact "
                            "(give a run folder of `make train` or an exported firmware/src/generated)")
    try:
        manifest = Manifest.from_dict(values if isinstance(values, dict) else {})
    except ValueError as error:
        raise ArtifactError(f"{manifest_path}: {error}") from None
    try:
        model = model_path.read_bytes()
    except OSError as error:
        raise ArtifactError(f"{model_path}: cannot read the model: {error.strerror}") from None
    check_model(manifest, model, str(model_path))
    return Artifact(manifest, model, folder)
