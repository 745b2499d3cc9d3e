"""Full-int8 post-training quantization, and the proof that TensorFlow Lite Micro runs the result exactly."""
from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
from ai_edge_litert.interpreter import OpResolverType
from tflite_micro.python.tflite_micro import runtime as tflm

from training.quiet import filtered_output, import_tensorflow

# Metadata TFLM reads; everything else in the flatbuffer's metadata is for converters and tools.
TFLM_METADATA = {"OfflineMemoryAllocation"}


def convert_int8(model, representative: np.ndarray) -> bytes:
    """int8 weights, activations, input and output, calibrated on `representative` float features.

    `model` must have batch size 1 (`build_model(..., batch_size=1)`), so every shape is static.
    """

    def samples():
        for x in representative:
            yield [x[np.newaxis, ..., np.newaxis].astype(np.float32)]

    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with filtered_output():  # the converter narrates the SavedModel it writes
        return converter.convert()


def strip(model_bytes: bytes) -> bytes:
    """Drop what TFLM never reads: tensor and subgraph names, signatures, description, converter metadata."""
    import_tensorflow()
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    flatbuffer_utils.strip_strings(model)
    kept = []
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name in TFLM_METADATA:
            kept.append(entry)
        else:
            model.buffers[entry.buffer].data = None
    model.metadata = kept or None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def run_litert(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """int8 outputs of LiteRT's reference kernels for int8 inputs (n, frames, coefficients)."""
    interpreter = LiteRTInterpreter(model_content=model_bytes, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    outputs = []
    for x in inputs:
        interpreter.set_tensor(inp["index"], x.reshape(inp["shape"]))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.array(outputs)


def tflm_interpreter(model_bytes: bytes, arena_size: int):
    return tflm.Interpreter.from_bytes(model_bytes, arena_size=arena_size)


def run_tflm(model_bytes: bytes, inputs: np.ndarray, arena_size: int) -> np.ndarray:
    """int8 outputs of the TensorFlow Lite Micro runtime (its real kernels) for int8 inputs."""
    interpreter = tflm_interpreter(model_bytes, arena_size)
    shape = interpreter.get_input_details(0)["shape"]
    outputs = []
    for x in inputs:
        interpreter.set_input(x.reshape(shape), 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0)[0].copy())
    return np.array(outputs)


def smallest_arena(model_bytes: bytes, probe: np.ndarray, granularity: int = 16) -> int:
    """The smallest tensor arena in which TFLM allocates and invokes the model (binary search)."""

    def works(size: int) -> bool:
        try:
            with filtered_output(keep=lambda line: False):  # TFLM prints every failed allocation: on purpose here
                run_tflm(model_bytes, probe[:1], size)
            return True
        except (RuntimeError, ValueError):
            return False

    low, high = granularity, 64 * 1024
    while not works(high):
        high *= 2
        if high > 64 * 1024 * 1024:
            raise RuntimeError("TFLM cannot allocate the model even in a 64 MiB arena")
    while high - low > granularity:
        middle = (low + high) // 2 // granularity * granularity
        low, high = (low, middle) if works(middle) else (middle, high)
    return high


def deployable_int8(arch: str, n_classes: int, weights: list, cfg, representative: np.ndarray,
                    test_features: np.ndarray) -> dict:
    """The full-int8, stripped model of trained `weights`, its smallest TFLM arena, and the proof that
    stripping changed nothing: {"model_bytes", "arena", "figures"}. ValueError for weights that are not finite.

    Converted from a batch-1 copy of the architecture, so every tensor shape is static; calibrated on
    `representative` float features; the arena and the stripping checked on `test_features`."""
    from training.features import quantize as quantize_features
    from training.flatbuffer import inspect_model
    from training.model import build_model

    if not all(np.all(np.isfinite(w)) for w in weights):
        raise ValueError("training diverged: the model's weights are NaN or infinite (lower --learning-rate)")
    deployable = build_model(arch, n_classes, cfg, batch_size=1)
    deployable.set_weights(weights)
    converted = convert_int8(deployable, representative)
    model_bytes = strip(converted)
    info = inspect_model(model_bytes)
    test_inputs = quantize_features(test_features, info.input.scale, info.input.zero_point)
    arena = smallest_arena(model_bytes, test_inputs)
    strip_safe = np.array_equal(run_tflm(converted, test_inputs, arena), run_tflm(model_bytes, test_inputs, arena))
    return {"model_bytes": model_bytes, "arena": arena, "figures": {
        "parameters": int(deployable.count_params()), "int8_weight_bytes": info.int8_weight_bytes,
        "int32_bias_bytes": info.int32_bias_bytes, "tflite_bytes": len(model_bytes),
        "tflite_bytes_before_strip": len(converted), "strip_keeps_tflm_outputs": bool(strip_safe),
        "multiply_accumulates": info.multiply_accumulates, "ops": list(info.ops)}}
