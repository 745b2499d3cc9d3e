"""What a `.tflite` flatbuffer says about itself: input and output tensors, ops, multiply-accumulates
and weight bytes, read once with the flatbuffer schema (no TensorFlow import, so host tools start fast).

    info = inspect_model(model_bytes)   # ModelError, naming what is wrong, for anything not a usable model
    info.input.shape, info.output.scale, info.ops, info.multiply_accumulates
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as schema

TYPE_NAMES = {value: name.lower() for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
OP_NAMES = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


class ModelError(ValueError):
    """Bytes that are not a model the firmware can run, said in terms of the model."""


@dataclass(frozen=True)
class TensorSpec:
    """An input or output tensor: its static shape, element type and int8 quantization."""

    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, values: dict) -> TensorSpec:
        return cls(tuple(int(d) for d in values["shape"]), str(values["dtype"]), float(values["scale"]),
                   int(values["zero_point"]))


@dataclass(frozen=True)
class ModelInfo:
    input: TensorSpec
    output: TensorSpec
    ops: tuple[str, ...]  # builtin operator names, sorted
    multiply_accumulates: int  # of one inference: convolutions (depthwise too) and fully connected layers
    int8_weight_bytes: int
    int32_bias_bytes: int
    float_weight_bytes: int  # constant float tensors: 0 in a fully int8 model


def _tensor_spec(tensor) -> TensorSpec:
    quantization = tensor.quantization
    scales = [] if quantization is None or quantization.scale is None else list(quantization.scale)
    zero_points = [] if quantization is None or quantization.zeroPoint is None else list(quantization.zeroPoint)
    return TensorSpec(tuple(int(d) for d in (tensor.shape if tensor.shape is not None else [])),
                      TYPE_NAMES.get(tensor.type, str(tensor.type)),
                      float(scales[0]) if len(scales) == 1 else float("nan"),
                      int(zero_points[0]) if len(zero_points) == 1 else 0)


def _parse(model_bytes: bytes):
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise ModelError(f"not a TensorFlow Lite flatbuffer ({len(model_bytes)} bytes, no TFL3 identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    except Exception as error:  # noqa: BLE001  (a damaged flatbuffer fails in many ways inside the parser)
        raise ModelError(f"damaged TensorFlow Lite flatbuffer: {type(error).__name__}: {error}") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise ModelError(f"expected one subgraph, found {len(model.subgraphs or [])}")
    return model


def _op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return OP_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"CUSTOM({code.customCode!r})")


def _macs(name: str, weights: tuple[int, ...], outputs: int) -> int:
    if name == "CONV_2D":  # weights [out_ch, kh, kw, in_ch]: every output sums kh*kw*in_ch products
        return outputs * int(np.prod(weights[1:]))
    if name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, ch]
        return outputs * int(weights[1] * weights[2])
    if name == "FULLY_CONNECTED":  # weights [out, in]
        return outputs * int(weights[1])
    return 0


def inspect_model(model_bytes: bytes) -> ModelInfo:
    """The facts of one model; ModelError for bytes that are not a one-input, one-output model with
    finite quantization (a NaN scale is what a model with NaN weights quantizes to)."""
    model = _parse(bytes(model_bytes))
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError(f"expected one input and one output tensor, found {len(graph.inputs)} and {len(graph.outputs)}")
    macs, weight_bytes = 0, {"int8": 0, "int32": 0, "float32": 0, "float16": 0}
    ops = set()
    for op in graph.operators or []:
        name = _op_name(model, op)
        ops.add(name)
        if len(op.inputs) > 1 and op.inputs[1] >= 0:
            weights = tuple(int(d) for d in graph.tensors[op.inputs[1]].shape)
            macs += _macs(name, weights, int(np.prod(graph.tensors[op.outputs[0]].shape)))
    for tensor in graph.tensors:
        data = model.buffers[tensor.buffer].data
        kind = TYPE_NAMES.get(tensor.type)
        if data is not None and len(data) and kind in weight_bytes:
            weight_bytes[kind] += len(data)
        scales = tensor.quantization.scale if tensor.quantization is not None else None
        if scales is not None and not all(math.isfinite(s) for s in scales):
            raise ModelError(f"tensor {tensor.name!r} has a non-finite quantization scale: the model was "
                             "trained into NaN or infinite weights (a diverging run)")
    return ModelInfo(_tensor_spec(graph.tensors[graph.inputs[0]]), _tensor_spec(graph.tensors[graph.outputs[0]]),
                     tuple(sorted(ops)), int(macs), weight_bytes["int8"], weight_bytes["int32"],
                     weight_bytes["float32"] + weight_bytes["float16"])
