"""Full-int8 post-training quantization, and the proof that TensorFlow Lite Micro runs the result exactly."""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
from ai_edge_litert.interpreter import OpResolverType
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils
from tflite_micro.python.tflite_micro import runtime as tflm

# Metadata TFLM reads; everything else in the flatbuffer's metadata is for converters and tools.
TFLM_METADATA = {"OfflineMemoryAllocation"}


def convert_int8(model: tf.keras.Model, representative: np.ndarray) -> bytes:
    """int8 weights, activations, input and output, calibrated on `representative` float features.

    `model` must have batch size 1 (`build_model(..., batch_size=1)`), so every shape is static.
    """

    def samples():
        for x in representative:
            yield [x[np.newaxis, ..., np.newaxis].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def strip(model_bytes: bytes) -> bytes:
    """Drop what TFLM never reads: tensor and subgraph names, signatures, description, converter metadata."""
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


def model_ops(model_bytes: bytes) -> list[str]:
    """Builtin operator names the model uses, e.g. ['CONV_2D', 'FULLY_CONNECTED'] (sorted)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    used = set()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            used.add(names[max(code.builtinCode, code.deprecatedBuiltinCode)])
    return sorted(used)


def weight_bytes(model_bytes: bytes) -> dict[str, int]:
    """Bytes of constant tensors by type: int8 weights and int32 biases."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    sizes = {"int8_weight_bytes": 0, "int32_bias_bytes": 0}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            data = model.buffers[tensor.buffer].data
            if data is None or len(data) == 0:
                continue
            if tensor.type == schema.TensorType.INT8:
                sizes["int8_weight_bytes"] += len(data)
            elif tensor.type == schema.TensorType.INT32:
                sizes["int32_bias_bytes"] += len(data)
    return sizes


def io_quantization(model_bytes: bytes) -> dict[str, float | int | list]:
    interpreter = LiteRTInterpreter(model_content=model_bytes)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    return {
        "input_scale": float(inp["quantization"][0]),
        "input_zero_point": int(inp["quantization"][1]),
        "input_shape": [int(d) for d in inp["shape"]],
        "output_scale": float(out["quantization"][0]),
        "output_zero_point": int(out["quantization"][1]),
    }


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


@contextlib.contextmanager
def _quiet_stderr():
    """TFLM's C++ prints every failed allocation; the search below fails on purpose."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def smallest_arena(model_bytes: bytes, probe: np.ndarray, granularity: int = 16) -> int:
    """The smallest tensor arena in which TFLM allocates and invokes the model (binary search)."""

    def works(size: int) -> bool:
        try:
            with _quiet_stderr():
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
