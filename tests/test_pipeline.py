"""End to end on a slice of the real mini set: train -> int8 -> TFLM check -> export -> compile -> evaluate."""
import json
import subprocess

import pytest
from tensorflow.lite.tools import flatbuffer_utils

from conftest import require_tool, run_module
from training.config import FeatureConfig
from training.export import OP_RESOLVER_METHODS
from training.flatbuffer import inspect_model

ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-Os"]


@pytest.fixture(scope="module")
def run(kws12_run):
    return kws12_run


def test_run_writes_its_artifacts_and_report(run):
    root, report, stdout = run
    for name in ("model_int8.tflite", "model_float.keras", "report.json", "confusion.png", "confusion_test_set.png"):
        assert (root / "run" / name).is_file(), name
    model = report["model"]
    assert model["tflite_bytes"] == (root / "run" / "model_int8.tflite").stat().st_size
    assert model["int8_weight_bytes"] == 12512  # dscnn: 46 filters, four blocks
    assert model["multiply_accumulates"] == 1_495_552 and model["parameters"] > 0
    assert report["manifest"]["arena_bytes"] > 1024
    assert report["dataset"]["splits"]["training"]["yes"] == 12
    for engine in ("float", "int8", "tflm"):
        assert 0 <= report["test"]["engines"][engine]["accuracy"] <= 1
    assert "TFLM output identical to LiteRT: True" in stdout


def test_tflm_is_bit_identical_to_litert_on_the_whole_test_split(run):
    root, report, _ = run
    assert report["tflm_equals_litert"] == {"identical": True, "differing_clips": 0}
    engines = report["test"]["engines"]
    assert engines["tflm"]["accuracy"] == engines["int8"]["accuracy"]
    assert report["test"]["n"] == sum(report["dataset"]["splits"]["testing"].values())
    assert report["test_set"]["n"] == 570 and report["test_set"]["tflm_equals_litert"]["identical"]


def test_model_is_fully_int8_with_static_shapes_and_known_ops(run):
    root, report, _ = run
    model_bytes = (root / "run" / "model_int8.tflite").read_bytes()
    info, cfg = inspect_model(model_bytes), FeatureConfig()
    assert info.input.shape == (1, cfg.n_frames, cfg.n_mfcc, 1) and info.input.dtype == info.output.dtype == "int8"
    assert info.output.scale == pytest.approx(1 / 256) and info.output.zero_point == -128
    # the flatbuffer reader agrees with LiteRT's own view of the model
    from ai_edge_litert.interpreter import Interpreter

    litert = Interpreter(model_content=model_bytes)
    (inp,), (out,) = litert.get_input_details(), litert.get_output_details()
    assert (tuple(inp["shape"]), *inp["quantization"]) == (info.input.shape, info.input.scale, info.input.zero_point)
    assert (tuple(out["shape"]), *out["quantization"]) == (info.output.shape, info.output.scale, info.output.zero_point)
    assert info.multiply_accumulates == report["model"]["multiply_accumulates"] == 1_495_552
    ops = info.ops
    assert set(ops) <= set(OP_RESOLVER_METHODS)
    assert not {"SHAPE", "PACK", "STRIDED_SLICE", "QUANTIZE", "DEQUANTIZE"} & set(ops)


def test_exported_model_carries_nothing_tflm_does_not_need(run):
    root, report, _ = run
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray((root / "run" / "model_int8.tflite").read_bytes()))
    assert model.signatureDefs is None and model.description is None and not model.metadata
    assert all(t.name is None for g in model.subgraphs for t in g.tensors)
    assert report["model"]["tflite_bytes"] < report["model"]["tflite_bytes_before_strip"]
    assert report["model"]["strip_keeps_tflm_outputs"] is True


def test_evaluate_cli_reproduces_the_training_figures(run, mini_set):
    root, report, _ = run
    model = root / "run" / "model_int8.tflite"
    result = run_module("training.evaluate", "--model", model, "--data-dir", mini_set, "--json", "--out", root / "eval")
    assert result.returncode == 0, result.stderr[-3000:]
    evaluation = json.loads(result.stdout)
    assert {"accuracy", "n", "per_class", "engine"} <= evaluation.keys()
    assert evaluation["engine"] == "tflm"
    assert evaluation["n"] == report["test"]["n"] and evaluation["accuracy"] == report["test"]["accuracy"]
    assert (root / "eval" / "confusion.png").is_file()
    canonical = run_module("training.evaluate", "--model", model, "--engines", "int8,tflm", "--json",
                           "--test-set", mini_set.parent / "speech_commands_test_set_v0.02_mini")
    assert canonical.returncode == 0, canonical.stderr[-3000:]
    assert json.loads(canonical.stdout)["accuracy"] == report["test_set"]["accuracy"]
    missing = run_module("training.evaluate", "--model", root / "none", "--data-dir", mini_set)
    assert missing.returncode == 2 and "none does not exist" in missing.stderr


def exported(run):
    root, report, _ = run
    generated = root / "firmware" / "src" / "generated"
    assert sorted(p.name for p in generated.iterdir()) == [
        "kws_feature_tables.h", "kws_manifest.json", "kws_model.tflite", "kws_model_data.cc", "kws_model_data.h",
        "kws_settings.h"]
    return generated


def test_generated_files_say_so_and_match_the_model(run):
    generated = exported(run)
    root, report, _ = run
    for path in generated.glob("*.[hc]*"):
        assert path.read_text().startswith("// Generated by `python -m training.train "), path
    manifest = json.loads((generated / "kws_manifest.json").read_text())
    assert manifest.pop("generated_by").startswith("python -m training.train ")
    assert manifest == report["manifest"]  # the manifest written beside the C is the report's
    assert (generated / "kws_model.tflite").read_bytes() == (root / "run" / "model_int8.tflite").read_bytes()
    settings = (generated / "kws_settings.h").read_text()
    assert f"#define KWS_ARENA_BYTES {manifest['arena_bytes']}" in settings
    assert '#define KWS_LABELS {"_silence_", "_unknown_", "yes", ' in settings
    assert "#define KWS_KEYWORD_MASK {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}" in settings
    assert f"#define KWS_INPUT_ZERO_POINT {manifest['input']['zero_point']}" in settings
    assert f"#define KWS_INFERENCE_EVERY_HOPS {manifest['app']['inference_every_hops']}" in settings


CHECK_PROGRAM = r"""
#include <stdio.h>
#include "kws_settings.h"
#include "kws_feature_tables.h"
#include "kws_model_data.h"
struct Resolver { int added = 0; %(methods)s };
int main() {
  static const char *labels[KWS_LABEL_COUNT] = KWS_LABELS;
  Resolver resolver;
  KWS_REGISTER_OPS(resolver);
  float mel_weight_sum = 0;
  for (int b = 0; b < KWS_MEL_BANDS; ++b)
    for (int i = 0; i < kKwsMelLength[b]; ++i) mel_weight_sum += kKwsMelWeights[kKwsMelOffset[b] + i];
  printf("%%s %%zu %%d %%d %%.6f %%.6f %%.6f %%d\n", labels[KWS_LABEL_COUNT - 1], g_kws_model_len, resolver.added,
         KWS_OP_COUNT, kKwsWindow[KWS_WINDOW_SAMPLES / 4], mel_weight_sum, kKwsDct[KWS_MEL_BANDS + 3],
         (int)((unsigned long)g_kws_model %% 16));
  return 0;
}
"""


def test_exported_c_compiles_and_runs_on_the_host(run, tmp_path):
    generated = exported(run)
    root, report, _ = run
    gxx = require_tool("g++", "g++")
    methods = " ".join(f"void {m}() {{ ++added; }}" for m in OP_RESOLVER_METHODS.values())
    (tmp_path / "check.cc").write_text(CHECK_PROGRAM % {"methods": methods})
    subprocess.run([gxx, "-std=c++17", "-Wall", "-Werror", "-I", generated, tmp_path / "check.cc",
                    generated / "kws_model_data.cc", "-o", tmp_path / "check"], check=True)
    label, length, added, count, window, mel_sum, dct, misalignment = subprocess.run(
        [tmp_path / "check"], capture_output=True, text=True, check=True).stdout.split()
    from training.features import feature_tables
    tables = feature_tables(FeatureConfig())
    assert label == report["manifest"]["labels"][-1] and int(length) == report["model"]["tflite_bytes"]
    assert int(added) == int(count) == len(report["model"]["ops"])
    assert float(window) == pytest.approx(tables["window"][160], abs=1e-6)
    assert float(mel_sum) == pytest.approx(tables["mel"].sum(), rel=1e-5)
    assert float(dct) == pytest.approx(tables["dct"][1, 3], abs=1e-6)
    assert misalignment == "0"
    # the C array holds exactly the .tflite bytes
    values = (generated / "kws_model_data.cc").read_text().split("{", 1)[1].split("}", 1)[0]
    assert bytes(int(v, 16) for v in values.replace(",", " ").split()) == (root / "run" / "model_int8.tflite").read_bytes()


def test_exported_c_cross_compiles_for_cortex_m4f(run, tmp_path):
    generated = exported(run)
    gxx = require_tool("arm-none-eabi-g++", "gcc-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    size = require_tool("arm-none-eabi-size", "binutils-arm-none-eabi")
    (tmp_path / "tables.cc").write_text(
        '#include "kws_settings.h"\n#include "kws_feature_tables.h"\n'
        "extern const float *const kTables[] = {kKwsWindow, kKwsMelWeights, kKwsDct};\n")
    objects = []
    for source in (generated / "kws_model_data.cc", tmp_path / "tables.cc"):
        obj = tmp_path / (source.stem + ".o")
        subprocess.run([gxx, *ARM_FLAGS, "-std=c++17", "-Wall", "-Werror", "-I", generated, "-c", source, "-o", obj], check=True)
        objects.append(obj)
    sizes = subprocess.run([size, *objects], capture_output=True, text=True, check=True).stdout
    print(sizes)
    text_bytes = int(sizes.splitlines()[1].split()[0])
    assert text_bytes >= run[1]["model"]["tflite_bytes"]  # the model sits in flash (.rodata counted as text)
