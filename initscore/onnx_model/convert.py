"""An ONNX graph as a torch module whose parameters are the graph's own initializers (torch).

:class:`OnnxNet` interprets the nodes of a checked graph (:mod:`initscore.onnx_model.check`) in their
stored (topological) order with torch operations only, so it runs under ``torch.func`` transforms
(``vmap``/``grad``/``functional_call``) and second-order autograd like any registry model.

* Layers become torch modules of the same kind, so the engine's BatchNorm modes, grad samplers and
  fast paths apply to them: ``Conv`` -> ``nn.Conv1d/2d``; ``BatchNormalization`` (inference or training
  mode) -> ``nn.BatchNorm1d/2d`` with the running statistics as buffers; ``Gemm`` with a weight initializer
  (``transA = 0``, ``alpha = beta = 1``) -> ``nn.Linear``; ``MatMul`` with a 2-D weight initializer ->
  ``nn.Linear`` without bias; ``LayerNormalization`` -> ``nn.LayerNorm``.
* A module sits at the path its weight's name gives (``layer1.0.conv1.weight`` -> ``layer1.0.conv1``),
  so a graph exported from PyTorch keeps PyTorch's parameter names; other floating-point initializers
  are parameters at their own dotted name. Names that are not valid module paths go under
  ``onnx_params`` / ``onnx_layers`` with ``.`` and other characters replaced. :attr:`OnnxNet.onnx_names`
  maps every state-dict key that holds an initializer to that initializer's name.
* ``Identity`` of an initializer (PyTorch's exporter writes one initializer for equal constants, such as
  every zero bias, and aliases it) gives a separate parameter named by the Identity's output.
* Shape arithmetic (``Shape``, ``Gather``, ``Concat``, ``Cast``, ...) runs on small tensors built from the
  input's shape; the batch dimension is the input's own (1 inside the engine's per-sample ``vmap``).

:func:`rectified_onnx` writes a state dict back into the graph (initializers replaced by name).
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from initscore.errors import SpecError

_INT64_MAX = 2**63 - 1
MAX_ELEMENTS = 2**28  # largest tensor an operator may create from a shape the graph computes (1 GiB of float32)
_VALID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^[0-9]+$")


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _tensor(arr: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(arr, copy=True))


def _dtype(onnx_type: int) -> torch.dtype:
    from onnx import TensorProto as T

    table = {T.FLOAT: torch.float32, T.DOUBLE: torch.float64, T.FLOAT16: torch.float16, T.BFLOAT16: torch.bfloat16,
             T.INT64: torch.int64, T.INT32: torch.int32, T.INT16: torch.int16, T.INT8: torch.int8, T.UINT8: torch.uint8,
             T.BOOL: torch.bool}
    if onnx_type not in table:
        raise SpecError(f"ONNX tensor type {onnx_type} is not supported")
    return table[onnx_type]


def _ints(t: Tensor | None) -> list[int]:
    return [] if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _sanitize(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return s if s and not s[0].isdigit() else f"t_{s}"


class OnnxNet(nn.Module):
    """A checked ONNX ``ModelProto`` as a module; see the module docstring."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        from onnx import numpy_helper, shape_inference

        graph = model.graph
        self.opset = max(int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx"))
        init_names = {t.name for t in graph.initializer}
        self.input_name = next(v.name for v in graph.input if v.name not in init_names)
        self.output_name = graph.output[0].name
        try:
            inferred = shape_inference.infer_shapes(model)
            ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
                     list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
                     if v.type.tensor_type.HasField("shape")}
        except Exception:  # shape inference is a help for BatchNorm's rank, not a requirement
            ranks = {}
        arrays: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        nodes = list(graph.node)
        # Identity of an initializer: a separate tensor named by its output
        kept = []
        for node in nodes:
            if node.op_type == "Identity" and node.input[0] in arrays and node.output[0] not in arrays:
                arrays[node.output[0]] = arrays[node.input[0]]
            else:
                kept.append(node)
        nodes = kept
        self.onnx_names: dict[str, str] = {}
        self._values: dict[str, str] = {}  # ONNX value name -> attribute path of its tensor (param or buffer)
        self._transposed: set[str] = set()  # state-dict keys stored transposed relative to their initializer
        self._program: list[tuple[str, list[str], list[str], dict[str, Any], str | None]] = []
        used_by_layer: set[str] = set()
        n_const = 0
        for i, node in enumerate(nodes):
            op, ins, outs, attrs = node.op_type, list(node.input), list(node.output), _attrs(node)
            path = None
            if op == "Constant":
                self._const(outs[0], self._constant_value(attrs, numpy_helper), n_const)
                n_const += 1
                continue
            if op == "Conv" and ins[1] in arrays:
                path = self._conv(node, ins, attrs, arrays)
            elif op == "BatchNormalization" and all(n in arrays for n in ins[1:5]):
                path = self._batchnorm(node, ins, attrs, arrays, ranks.get(ins[0]))
            elif op == "Gemm" and ins[1] in arrays and not attrs.get("transA", 0) \
                    and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 \
                    and (len(ins) < 3 or ins[2] == "" or (ins[2] in arrays and arrays[ins[2]].ndim == 1)):
                path = self._linear(node, ins[1], ins[2] if len(ins) > 2 and ins[2] else None, arrays,
                                    transposed=not attrs.get("transB", 0))
            elif op == "MatMul" and ins[1] in arrays and arrays[ins[1]].ndim == 2 and ins[0] not in arrays:
                path = self._linear(node, ins[1], None, arrays, transposed=True)
            elif op == "LayerNormalization" and ins[1] in arrays and attrs.get("axis", -1) == -1 \
                    and (len(ins) < 3 or ins[2] == "" or ins[2] in arrays):
                path = self._layernorm(node, ins, attrs, arrays)
            if path is not None:
                used_by_layer.update(n for n in ins[1:] if n)
            self._program.append((op, ins, outs, attrs, path))
        # every other initializer a node reads: a parameter (floating point) or a constant
        for op, ins, _, _, path in self._program:
            for k, name in enumerate(ins):
                if not name or name in self._values or name not in arrays:
                    continue
                if path is not None and name in used_by_layer:
                    continue
                arr = arrays[name]
                if np.issubdtype(arr.dtype, np.floating) and not (arr.size == 1 and name.startswith("onnx::")):
                    self._param(name, arr)
                else:
                    self._const(name, arr, n_const)
                    n_const += 1

    # ----------------------------------------------------------------- construction
    def _constant_value(self, attrs: dict[str, Any], numpy_helper: Any) -> np.ndarray:
        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"])
        for key, dtype in (("value_float", np.float32), ("value_int", np.int64), ("value_floats", np.float32),
                           ("value_ints", np.int64)):
            if key in attrs:
                return np.array(attrs[key], dtype=dtype)
        raise SpecError(f"Constant with attributes {sorted(attrs)} is not supported")

    def _attach(self, path: str, obj: nn.Module | nn.Parameter, fallback_root: str) -> str:
        """Put ``obj`` at the dotted ``path`` (creating containers), or under ``fallback_root`` when it cannot."""
        parts = path.split(".")
        ok = path and all(_VALID.match(p) for p in parts)
        if ok:
            mod: nn.Module = self
            for p in parts[:-1]:
                nxt = mod._modules.get(p)
                if nxt is None:
                    if hasattr(mod, p):
                        ok = False
                        break
                    nxt = nn.Module()
                    mod.add_module(p, nxt)
                mod = nxt
            if ok and not hasattr(mod, parts[-1]):
                if isinstance(obj, nn.Parameter):
                    mod.register_parameter(parts[-1], obj)
                else:
                    mod.add_module(parts[-1], obj)
                return path
        root = self._modules.get(fallback_root)
        if root is None:
            root = nn.Module()
            self.add_module(fallback_root, root)
        leaf = _sanitize(path)
        while hasattr(root, leaf):
            leaf += "_"
        if isinstance(obj, nn.Parameter):
            root.register_parameter(leaf, obj)
        else:
            root.add_module(leaf, obj)
        return f"{fallback_root}.{leaf}"

    def _param(self, name: str, arr: np.ndarray) -> str:
        path = self._attach(name, nn.Parameter(_tensor(arr)), "onnx_params")
        self._values[name] = path
        self.onnx_names[path] = name
        return path

    def _const(self, name: str, arr: np.ndarray, k: int) -> None:
        attr = f"_c{k}"
        self.register_buffer(attr, _tensor(arr), persistent=False)
        self._values[name] = attr

    def _layer_path(self, node: Any, weight: str) -> str:
        return weight[: -len(".weight")] if weight.endswith(".weight") else f"{node.op_type.lower()}_{node.name or weight}"

    def _bind(self, module: nn.Module, node: Any, weight: str, tensors: dict[str, tuple[str, np.ndarray]],
              buffers: dict[str, tuple[str, np.ndarray]] | None = None) -> str:
        for attr, (name, arr) in tensors.items():
            setattr(module, attr, nn.Parameter(_tensor(arr)))
        for attr, (name, arr) in (buffers or {}).items():
            getattr(module, attr).copy_(_tensor(arr))
        path = self._attach(self._layer_path(node, weight), module, "onnx_layers")
        for attr, (name, _) in {**tensors, **(buffers or {})}.items():
            self.onnx_names[f"{path}.{attr}"] = name
        return path

    def _conv(self, node: Any, ins: list[str], attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
        w = arrays[ins[1]]
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise SpecError(f"Conv node {node.name!r}: auto_pad {attrs['auto_pad']!r} is not supported; export with "
                            "explicit pads")
        dims = w.ndim - 2
        if dims not in (1, 2):
            raise SpecError(f"Conv node {node.name!r}: {dims}-D convolution is not supported")
        pads = list(attrs.get("pads", [0] * 2 * dims))
        sym = pads[:dims] == pads[dims:]
        cls = nn.Conv1d if dims == 1 else nn.Conv2d
        bias = len(ins) > 2 and bool(ins[2])
        conv = cls(int(w.shape[1]) * int(attrs.get("group", 1)), int(w.shape[0]), tuple(int(v) for v in w.shape[2:]),
                   stride=tuple(attrs.get("strides", [1] * dims)), padding=tuple(pads[:dims]) if sym else 0,
                   dilation=tuple(attrs.get("dilations", [1] * dims)), groups=int(attrs.get("group", 1)), bias=bias)
        conv._onnx_pad = None if sym else pads  # type: ignore[attr-defined]
        tensors = {"weight": (ins[1], w)}
        if bias:
            tensors["bias"] = (ins[2], arrays[ins[2]])
        return self._bind(conv, node, ins[1], tensors)

    def _batchnorm(self, node: Any, ins: list[str], attrs: dict[str, Any], arrays: dict[str, np.ndarray],
                   rank: int | None) -> str:
        c = int(arrays[ins[1]].shape[0])
        cls = nn.BatchNorm1d if rank in (2, 3) else nn.BatchNorm2d
        bn = cls(c, eps=float(attrs.get("epsilon", 1e-5)), momentum=1.0 - float(attrs.get("momentum", 0.9)))
        return self._bind(bn, node, ins[1], {"weight": (ins[1], arrays[ins[1]]), "bias": (ins[2], arrays[ins[2]])},
                          {"running_mean": (ins[3], arrays[ins[3]]), "running_var": (ins[4], arrays[ins[4]])})

    def _linear(self, node: Any, weight: str, bias: str | None, arrays: dict[str, np.ndarray], *,
                transposed: bool) -> str:
        w = arrays[weight]
        w_t = w.T if transposed else w  # nn.Linear keeps (out, in)
        lin = nn.Linear(int(w_t.shape[1]), int(w_t.shape[0]), bias=bias is not None)
        tensors = {"weight": (weight, w_t)}
        if bias is not None:
            tensors["bias"] = (bias, arrays[bias])
        path = self._bind(lin, node, weight, tensors)
        if transposed:
            self._transposed.add(f"{path}.weight")
        return path

    def _layernorm(self, node: Any, ins: list[str], attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
        scale = arrays[ins[1]]
        has_bias = len(ins) > 2 and bool(ins[2])
        ln = nn.LayerNorm(tuple(int(v) for v in scale.shape), eps=float(attrs.get("epsilon", 1e-5)),
                          elementwise_affine=True, bias=has_bias)
        tensors = {"weight": (ins[1], scale)}
        if has_bias:
            tensors["bias"] = (ins[2], arrays[ins[2]])
        return self._bind(ln, node, ins[1], tensors)

    # ----------------------------------------------------------------- running
    def _get(self, path: str) -> Tensor:
        obj: Any = self
        for p in path.split("."):
            obj = getattr(obj, p)
        return obj

    def forward(self, x: Tensor) -> Tensor:
        env: dict[str, Any] = {self.input_name: x}

        def val(name: str) -> Any:
            if not name:
                return None
            if name in env:
                return env[name]
            return self._get(self._values[name])

        for op, ins, outs, attrs, path in self._program:
            if path is not None:
                module = self._get(path)
                a = val(ins[0])
                if op == "Conv" and getattr(module, "_onnx_pad", None) is not None:
                    pads = module._onnx_pad
                    d = len(pads) // 2
                    a = F.pad(a, [p for i in reversed(range(d)) for p in (pads[i], pads[i + d])])
                y = module(a)
            else:
                args = [val(n) for n in ins]
                fn = _OPS.get(op)
                if fn is None:
                    raise SpecError(f"operator {op!r} is not supported")
                y = fn(args, attrs, self.opset)
            if isinstance(y, tuple):
                for name, v in zip(outs, y):
                    env[name] = v
            else:
                env[outs[0]] = y
        return env[self.output_name]

    def onnx_state_dict(self, state: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """``state`` (default: this module's) keyed by ONNX initializer names, in the initializers' layout."""
        state = self.state_dict() if state is None else state
        out = {}
        for key, name in self.onnx_names.items():
            if key in state:
                t = state[key].detach()
                out[name] = t.t() if key in self._transposed else t
        return out


# --------------------------------------------------------------------- operators
def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


def _pool_pads(attrs: dict[str, Any], d: int) -> tuple[list[int], bool]:
    pads = list(attrs.get("pads", [0] * 2 * d))
    return pads, pads[:d] == pads[d:]


def _max_pool(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    d = x.dim() - 2
    k = attrs["kernel_shape"]
    pads, sym = _pool_pads(attrs, d)
    if not sym:
        x = F.pad(x, [p for i in reversed(range(d)) for p in (pads[i], pads[i + d])], value=-math.inf)
        pads = [0] * 2 * d
    fn = F.max_pool1d if d == 1 else F.max_pool2d
    return fn(x, k, stride=attrs.get("strides", [1] * d), padding=pads[:d], dilation=attrs.get("dilations", [1] * d),
              ceil_mode=bool(attrs.get("ceil_mode", 0)))


def _avg_pool(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    d = x.dim() - 2
    pads, sym = _pool_pads(attrs, d)
    include = bool(attrs.get("count_include_pad", 0))
    if not sym:
        if not include:
            raise SpecError("AveragePool with asymmetric pads and count_include_pad=0 is not supported")
        x = F.pad(x, [p for i in reversed(range(d)) for p in (pads[i], pads[i + d])])
        pads = [0] * 2 * d
    fn = F.avg_pool1d if d == 1 else F.avg_pool2d
    return fn(x, attrs["kernel_shape"], stride=attrs.get("strides", [1] * d), padding=pads[:d],
              ceil_mode=bool(attrs.get("ceil_mode", 0)), count_include_pad=include)


def _softmax(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    axis = _axis(int(attrs.get("axis", -1 if opset >= 13 else 1)), x.dim())
    if opset >= 13:
        return torch.softmax(x, axis)
    shape = x.shape  # opsets < 13: softmax over the flattened dimensions from axis on
    return torch.softmax(x.reshape(*shape[:axis], -1), -1).reshape(shape)


def _axes_arg(args: list[Any], attrs: dict[str, Any], k: int = 1) -> list[int] | None:
    if "axes" in attrs:
        return list(attrs["axes"])
    if len(args) > k and args[k] is not None:
        return _ints(args[k])
    return None


def _unsqueeze(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    axes = sorted(_axis(a, x.dim() + len(_axes_arg(args, attrs))) for a in _axes_arg(args, attrs))
    for a in axes:
        x = x.unsqueeze(a)
    return x


def _squeeze(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    axes = _axes_arg(args, attrs)
    if axes is None:
        return x.squeeze()
    for a in sorted((_axis(a, x.dim()) for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


def _reduce_mean(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    axes = _axes_arg(args, attrs)
    keep = bool(attrs.get("keepdims", 1))
    if axes is None or not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.dim()))
    return x.mean(dim=[_axis(a, x.dim()) for a in axes], keepdim=keep)


def _reshape(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x, shape = args[0], _ints(args[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _flatten(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    axis = _axis(int(attrs.get("axis", 1)), x.dim())
    return x.reshape(int(math.prod(x.shape[:axis])), -1)


def _gather(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    data, idx = args[0], args[1].long()
    axis = _axis(int(attrs.get("axis", 0)), data.dim())
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = torch.index_select(data, axis, idx.reshape(-1))
    return out.reshape(*data.shape[:axis], *idx.shape, *data.shape[axis + 1:])


def _slice(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else None
        steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index: list[Any] = [slice(None)] * x.dim()
    flips = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _axis(a, x.dim())
        n = x.shape[a]
        if st > 0:
            s = max(0, min(n, s + n if s < 0 else s))
            e = max(0, min(n, e + n if e < 0 else e))
            index[a] = slice(s, e, st)
        else:  # a negative step: the reversed axis, sliced forward
            s = max(-1, min(n - 1, s + n if s < 0 else s))
            e = max(-1, min(n - 1, e + n if e < 0 else e)) if e > -_INT64_MAX else -1
            flips.append(a)
            index[a] = slice(n - 1 - s, n - 1 - e, -st)
    if flips:
        x = torch.flip(x, flips)
    return x[tuple(index)]


def _pad(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = _ints(args[1])
    value = float(args[2].reshape(-1)[0]) if len(args) > 2 and args[2] is not None and args[2].numel() else 0.0
    axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(x.dim()))
    axes = [_axis(a, x.dim()) for a in axes]
    k = len(axes)
    full = [0] * (2 * x.dim())
    for j, a in enumerate(axes):
        full[a], full[a + x.dim()] = pads[j], pads[j + k]
    _bounded("Pad", [x.shape[a] + full[a] + full[a + x.dim()] for a in range(x.dim())])
    torch_pads = [p for a in reversed(range(x.dim())) for p in (full[a], full[a + x.dim()])]
    while len(torch_pads) > 2 and torch_pads[-1] == 0 and torch_pads[-2] == 0:
        torch_pads = torch_pads[:-2]
    tmode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(mode)
    if tmode is None:
        raise SpecError(f"Pad mode {mode!r} is not supported")
    return F.pad(x, torch_pads, mode=tmode, value=value) if tmode == "constant" else F.pad(x, torch_pads, mode=tmode)


def _clip(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    if opset < 11:
        lo, hi = attrs.get("min"), attrs.get("max")
    else:
        lo = float(args[1].reshape(-1)[0]) if len(args) > 1 and args[1] is not None else None
        hi = float(args[2].reshape(-1)[0]) if len(args) > 2 and args[2] is not None else None
    return torch.clamp(x, min=lo, max=hi)


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., Tensor]:
    def run(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
        a, b = args[0], args[1]
        if a.is_floating_point() and not b.is_floating_point():
            b = b.to(a.dtype)
        elif b.is_floating_point() and not a.is_floating_point():
            a = a.to(b.dtype)
        elif a.is_floating_point() and a.dtype != b.dtype:
            b = b.to(a.dtype)
        return fn(a, b)

    return run


def _div(a: Tensor, b: Tensor) -> Tensor:
    return torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b


def _shape(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    shape = list(args[0].shape)[attrs.get("start", 0): attrs.get("end", None)]
    return torch.tensor(shape, dtype=torch.int64)


def _bounded(op: str, shape: Sequence[int]) -> list[int]:
    """``shape`` if a tensor of it is at most MAX_ELEMENTS, else SpecError (checked before allocating)."""
    shape = [int(d) for d in shape]
    if any(d < 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
        raise SpecError(f"{op} would create a tensor of shape {shape[:8]}, over {MAX_ELEMENTS:,} elements")
    return shape


def _const_of_shape(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    from onnx import numpy_helper

    v = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    t = _tensor(v).reshape(-1)[0]
    return torch.full(_bounded("ConstantOfShape", _ints(args[0])), t.item(), dtype=t.dtype)


def _gelu(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    approx = attrs.get("approximate", b"none")
    return F.gelu(args[0], approximate=approx.decode() if isinstance(approx, bytes) else approx)


def _concat(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    ts = [a for a in args if a is not None]
    if any(t.is_floating_point() for t in ts):
        dt = next(t.dtype for t in ts if t.is_floating_point())
        ts = [t.to(dt) for t in ts]
    return torch.cat(ts, dim=_axis(int(attrs["axis"]), ts[0].dim()))


def _transpose(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x = args[0]
    return x.permute(*(attrs.get("perm") or list(reversed(range(x.dim())))))


def _expand(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    x, shape = args[0], _ints(args[1])
    if any(d < 0 for d in shape):
        raise SpecError(f"Expand to a negative shape {shape[:8]}")
    return x.expand(_bounded("Expand", torch.broadcast_shapes(tuple(x.shape), tuple(shape))))


def _gemm(args: list[Any], attrs: dict[str, Any], opset: int) -> Tensor:
    a, b = args[0], args[1]
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    if len(args) > 2 and args[2] is not None:
        y = y + attrs.get("beta", 1.0) * args[2]
    return y


_OPS: dict[str, Callable[[list[Any], dict[str, Any], int], Any]] = {
    "Identity": lambda a, at, o: a[0],
    "Dropout": lambda a, at, o: a[0],
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul), "Div": _binary(_div),
    "Pow": _binary(torch.pow),
    "Sqrt": lambda a, at, o: torch.sqrt(a[0]), "Neg": lambda a, at, o: -a[0], "Abs": lambda a, at, o: a[0].abs(),
    "Exp": lambda a, at, o: torch.exp(a[0]), "Log": lambda a, at, o: torch.log(a[0]),
    "Erf": lambda a, at, o: torch.erf(a[0]),
    "Relu": lambda a, at, o: F.relu(a[0]),
    "LeakyRelu": lambda a, at, o: F.leaky_relu(a[0], at.get("alpha", 0.01)),
    "Sigmoid": lambda a, at, o: torch.sigmoid(a[0]), "Tanh": lambda a, at, o: torch.tanh(a[0]),
    "Softmax": _softmax, "Gelu": _gelu,
    "HardSigmoid": lambda a, at, o: torch.clamp(at.get("alpha", 0.2) * a[0] + at.get("beta", 0.5), 0.0, 1.0),
    "HardSwish": lambda a, at, o: F.hardswish(a[0]),
    "Clip": _clip,
    "MaxPool": _max_pool, "AveragePool": _avg_pool,
    "GlobalAveragePool": lambda a, at, o: a[0].mean(dim=list(range(2, a[0].dim())), keepdim=True),
    "GlobalMaxPool": lambda a, at, o: a[0].amax(dim=list(range(2, a[0].dim())), keepdim=True),
    "ReduceMean": _reduce_mean,
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose, "Concat": _concat, "Pad": _pad,
    "Shape": _shape, "Gather": _gather, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Slice": _slice,
    "Cast": lambda a, at, o: a[0].to(_dtype(int(at["to"]))),
    "ConstantOfShape": _const_of_shape, "Expand": _expand, "Gemm": _gemm,
    "MatMul": lambda a, at, o: torch.matmul(a[0], a[1]),
    "BatchNormalization": lambda a, at, o: F.batch_norm(a[0], a[3], a[4], a[1], a[2], False, 0.0,
                                                        at.get("epsilon", 1e-5)),
    "LayerNormalization": lambda a, at, o: F.layer_norm(a[0], a[1].shape, a[1], a[2] if len(a) > 2 else None,
                                                        at.get("epsilon", 1e-5)),
    "Conv": lambda a, at, o: _conv_fn(a, at),
}


def _conv_fn(args: list[Any], attrs: dict[str, Any]) -> Tensor:
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    d = w.dim() - 2
    pads, sym = _pool_pads(attrs, d)
    if not sym:
        x = F.pad(x, [p for i in reversed(range(d)) for p in (pads[i], pads[i + d])])
        pads = [0] * 2 * d
    fn = F.conv1d if d == 1 else F.conv2d
    return fn(x, w, b, stride=attrs.get("strides", [1] * d), padding=pads[:d], dilation=attrs.get("dilations", [1] * d),
              groups=attrs.get("group", 1))


def from_bytes(data: bytes, *, max_bytes: int = 256 * 2**20) -> OnnxNet:
    """Check ``data`` (:func:`initscore.onnx_model.check.check`) and convert it."""
    from initscore.onnx_model.check import check_model, load

    model = load(data, max_bytes=max_bytes)
    check_model(model)
    return OnnxNet(model)


def rectified_onnx(data: bytes, values: dict[str, Tensor]) -> bytes:
    """The uploaded graph with its initializers replaced by ``values`` (keyed by initializer name, in the
    initializers' layout: :meth:`OnnxNet.onnx_state_dict`), as ONNX bytes.

    An initializer that Identity nodes aliased becomes one initializer per alias (the Identity nodes go),
    since rectification gives every alias its own value.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    dtypes = {t.name: numpy_helper.to_array(t).dtype for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] in values and node.input[0] in dtypes:
            dtypes[node.output[0]] = dtypes[node.input[0]]
            continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    existing = {t.name for t in graph.initializer}
    new_inits = []
    for t in graph.initializer:
        if t.name in values:
            new_inits.append(numpy_helper.from_array(values[t.name].cpu().numpy().astype(dtypes[t.name]), t.name))
        else:
            new_inits.append(t)
    for name, v in values.items():
        if name not in existing:
            new_inits.append(numpy_helper.from_array(v.cpu().numpy().astype(dtypes.get(name, np.float32)), name))
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    onnx.checker.check_model(model)
    return model.SerializeToString()
