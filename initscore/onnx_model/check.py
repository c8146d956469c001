"""Torch-free checks of an uploaded ONNX network (the API runs them before anything is stored).

An upload is accepted only when (in this order; the first failure is the error):

1. it is at most ``max_bytes`` and parses as an ONNX ``ModelProto``;
2. no tensor refers to external data (a file path outside the upload);
3. ``onnx.checker.check_model`` passes;
4. every opset import is the default domain (``""`` / ``ai.onnx``) at version 11..MAX_OPSET — custom
   domains are refused;
5. every node's operator is in :data:`SUPPORTED_OPS` (the converter's allow-list; control flow such as
   ``Loop``, ``If`` and ``Scan`` is not) — the error names the first unsupported operator and its node;
6. the graph has exactly one input that is not an initializer (the image batch, rank >= 2) and one output.

:func:`check` returns a :class:`OnnxSummary` (input shape, parameter count, operators) on success and raises
:class:`initscore.errors.SpecError` with one line naming the cause otherwise.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from pydantic import BaseModel

from initscore.errors import SpecError

MAX_OPSET = 21

SUPPORTED_OPS: frozenset[str] = frozenset({
    # layers with parameters (converted to torch modules of the same kind)
    "Conv", "BatchNormalization", "Gemm", "MatMul", "LayerNormalization",
    # element-wise
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "Abs", "Exp", "Log", "Erf",
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Softmax", "Gelu", "HardSigmoid", "HardSwish", "Clip",
    # pooling and reductions
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean",
    # shapes and plumbing
    "Identity", "Constant", "Dropout", "Flatten", "Reshape", "Transpose", "Concat", "Pad", "Shape", "Gather",
    "Unsqueeze", "Squeeze", "Slice", "Cast", "ConstantOfShape", "Expand",
})


class OnnxSummary(BaseModel):
    """What the checker learned about an accepted graph."""

    opset: int
    input_name: str
    input_shape: list[int | str]  # a symbolic dimension (e.g. the batch) is its name or "?"
    output_name: str
    params: int  # elements of floating-point initializers (the user's weights)
    initializers: int
    ops: dict[str, int]


def _dims(value_info: Any) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def load(data: bytes, *, max_bytes: int) -> Any:
    """Parse ``data`` as an ONNX model (size cap first); SpecError when it is not one."""
    import onnx
    from google.protobuf.message import DecodeError

    if len(data) > max_bytes:
        raise SpecError(f"the ONNX file is {len(data):,} bytes, over the cap of {max_bytes:,} "
                        "(setting INITSCORE_MAX_MODEL_BYTES)")
    if not data:
        raise SpecError("the ONNX file is empty")
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise SpecError(f"not an ONNX model: {str(exc).splitlines()[0][:200] if str(exc) else 'protobuf parse error'}"
                        ) from None
    if not model.HasField("graph") or not model.graph.node:
        raise SpecError("not an ONNX model: it has no graph nodes")
    return model


def check_model(model: Any) -> OnnxSummary:
    """Checks 2-6 of the module docstring on a parsed ModelProto."""
    import onnx
    from onnx import external_data_helper

    graph = model.graph
    for t in external_data_helper._get_all_tensors(model):
        if external_data_helper.uses_external_data(t):
            raise SpecError(f"tensor {t.name!r} refers to external data; embed every weight in the file")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise SpecError(f"the ONNX checker rejects the model: {str(exc).splitlines()[0][:300]}") from None
    opset = None
    for imp in model.opset_import:
        if imp.domain not in ("", "ai.onnx"):
            raise SpecError(f"custom operator domain {imp.domain!r} is not supported")
        opset = int(imp.version)
    if opset is None or not 11 <= opset <= MAX_OPSET:
        raise SpecError(f"opset {opset} is not supported; export with opset 11..{MAX_OPSET}")
    for i, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx"):
            raise SpecError(f"node {node.name or i!r} uses operator {node.domain}.{node.op_type}, a custom domain")
        if node.op_type not in SUPPORTED_OPS:
            raise SpecError(f"operator {node.op_type!r} (node {node.name or i!r}) is not supported; supported: "
                            f"{sorted(SUPPORTED_OPS)}")
    init_names = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in init_names]
    if len(inputs) != 1:
        raise SpecError(f"the graph must have exactly one input (the image batch), it has {len(inputs)}")
    if len(graph.output) != 1:
        raise SpecError(f"the graph must have exactly one output (the logits), it has {len(graph.output)}")
    shape = _dims(inputs[0])
    if len(shape) < 2:
        raise SpecError(f"the graph input {inputs[0].name!r} must be a batch (rank >= 2), its shape is {shape}")
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    params = 0
    for t in graph.initializer:
        if t.data_type in floats:
            n = 1
            for d in t.dims:
                n *= int(d)
            params += n
    return OnnxSummary(opset=opset, input_name=inputs[0].name, input_shape=shape, output_name=graph.output[0].name,
                       params=params, initializers=len(graph.initializer),
                       ops=dict(Counter(n.op_type for n in graph.node)))


def check(data: bytes, *, max_bytes: int = 256 * 2**20) -> OnnxSummary:
    """Parse and check an uploaded ONNX file; see the module docstring."""
    return check_model(load(data, max_bytes=max_bytes))
