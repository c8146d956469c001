"""Users' networks as ONNX: the converted network has the file's initializers as parameters (PyTorch names kept)
and scores exactly as the original; the torch-free check refuses what the converter cannot run, naming why."""
from __future__ import annotations

import io
import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from initscore import models  # noqa: E402
from initscore.errors import SpecError  # noqa: E402
from initscore.onnx_model import check, from_bytes, rectified_onnx  # noqa: E402
from initscore.scores import gradcosine  # noqa: E402

CELL = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"


def export(model: nn.Module, shape: tuple[int, ...], *, train: bool = False) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, *shape),), f, dynamo=False, opset_version=17,
                          do_constant_folding=False, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.TRAINING if train else torch.onnx.TrainingMode.EVAL)
    return f.getvalue()


def _batch(shape, n=6, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def _same_scores(a_model, b_model, batch, modes=("sample", "batch")):
    for mode in modes:
        a, b = gradcosine(a_model, batch, mode=mode), gradcosine(b_model, batch, mode=mode)
        for attr in ("gc", "gn", "g_max", "g_min"):
            assert getattr(b, attr) == pytest.approx(getattr(a, attr), rel=1e-5, abs=1e-7), (mode, attr)


CASES = [
    ({"arch": "resnet20", "args": {"bn": False}}, (3, 32, 32), False),
    ({"arch": "resnet20", "args": {}}, (3, 32, 32), False),
    ({"arch": "resnet20", "args": {}}, (3, 32, 32), True),   # BatchNorm exported in training mode
    ({"arch": "nb201", "args": {"cell": CELL, "C": 8, "N": 1}}, (3, 32, 32), False),
    ({"arch": "mlp", "args": {"hidden": 32}}, (3, 32, 32), False),
]


@pytest.mark.parametrize("spec,shape,train", CASES, ids=["r20-nobn", "r20-bn", "r20-bn-train", "nb201", "mlp"])
def test_registry_models_through_onnx_score_as_the_original(spec, shape, train):
    torch.manual_seed(0)
    model = models.build(spec)
    net = from_bytes(export(model, shape, train=train))
    assert dict(net.named_parameters()).keys() == dict(model.named_parameters()).keys()
    for k, p in model.named_parameters():
        assert torch.equal(net.get_parameter(k), p.detach()), k  # the user's own initialization
    _same_scores(model, net, _batch(shape))


def test_torchvision_resnet50_through_onnx():
    torch.manual_seed(0)
    model = models.build({"arch": "torchvision:resnet50", "args": {"num_classes": 10}})
    net = from_bytes(export(model, (3, 64, 64)))
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in model.parameters())
    _same_scores(model, net, _batch((3, 64, 64), n=4), modes=("batch",))


def _hand_graph(opset: int = 17) -> tuple[bytes, dict[str, np.ndarray]]:
    """Conv (asymmetric pads, exporter-style names) -> BN -> Relu -> MaxPool -> GlobalAveragePool -> Flatten ->
    Gemm with transB = 0 (weight stored (in, out))."""
    rng = np.random.default_rng(0)
    w = {"W0": rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "onnx::Conv_b": rng.normal(0, 0.1, 4).astype(np.float32),
         "bn_s": (1 + 0.2 * rng.normal(size=4)).astype(np.float32), "bn_b": rng.normal(0, 0.1, 4).astype(np.float32),
         "bn_m": rng.normal(0, 0.1, 4).astype(np.float32), "bn_v": (1 + rng.random(4)).astype(np.float32),
         "fc/W": rng.normal(0, 0.3, (4, 5)).astype(np.float32), "fc/b": rng.normal(0, 0.1, 5).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "W0", "onnx::Conv_b"], ["c"], pads=[1, 0, 1, 2], name="conv"),
        helper.make_node("BatchNormalization", ["c", "bn_s", "bn_b", "bn_m", "bn_v"], ["n"], epsilon=1e-3, name="bn"),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc/W", "fc/b"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(nodes, "hand", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(v, k) for k, v in w.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return model.SerializeToString(), w


class _HandRef(nn.Module):
    """The hand-made graph written directly with torch ops (float64 reference; ONNX stores epsilon as float32)."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.p = nn.ParameterDict({k.replace("/", "_").replace(":", "_"): nn.Parameter(torch.tensor(v, dtype=torch.float64))
                                   for k, v in w.items() if k not in ("bn_m", "bn_v")})
        self.register_buffer("m", torch.tensor(w["bn_m"], dtype=torch.float64))
        self.register_buffer("v", torch.tensor(w["bn_v"], dtype=torch.float64))

    def forward(self, x):
        p = self.p
        c = F.conv2d(F.pad(x, [0, 2, 1, 1]), p["W0"], p["onnx__Conv_b"])
        n = (c - self.m.view(1, -1, 1, 1)) / torch.sqrt(self.v.view(1, -1, 1, 1) + float(np.float32(1e-3))) * p["bn_s"].view(1, -1, 1, 1) \
            + p["bn_b"].view(1, -1, 1, 1)
        g = F.max_pool2d(F.relu(n), 2, 2).mean(dim=(2, 3))
        return g @ p["fc_W"] + p["fc_b"]


def test_a_hand_made_graph_matches_its_float64_restatement_and_keeps_onnx_names():
    data, w = _hand_graph()
    net = from_bytes(data).double().eval()
    assert set(net.onnx_names.values()) == set(w)
    ref = _HandRef(w).eval()
    x, y = _batch((3, 8, 8), classes=5)
    x = x.double()
    with torch.no_grad():
        assert float((net(x) - ref(x)).abs().max()) < 1e-12
    state = net.onnx_state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: v.shape for k, v in w.items()}  # Gemm weight (in, out)
    assert all(np.allclose(state[k].numpy(), w[k]) for k in w)


@pytest.mark.parametrize("mode", ["batch", "sample"])  # sample: second order through vmap of the graph
def test_rectified_onnx_carries_the_rectified_weights(mode):
    from initscore.nio import apply, rectify

    data, _ = _hand_graph()
    net = from_bytes(data)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 3, 8, 8, generator=g), torch.randint(0, 5, (32,), generator=g)
    from initscore.data import TensorData

    r = rectify(net, TensorData(x, y, 5, "random"), iters=3, lr=0.1, batch_size=16, mode=mode)
    assert any(abs(s - 1.0) > 1e-6 for s in r.scales.values())
    out = from_bytes(rectified_onnx(data, net.onnx_state_dict(r.state_dict))).eval()
    apply(net, r)
    net.eval()
    with torch.no_grad():
        assert float((out(x) - net(x)).abs().max()) < 1e-5


def test_identity_aliased_initializers_become_separate_parameters():
    """PyTorch's exporter writes every equal zero bias of the no-BN ResNet-20 once and aliases it with Identity
    nodes; each alias is its own parameter, and the rectified file gives each its own initializer."""
    torch.manual_seed(0)
    model = models.build({"arch": "resnet20", "args": {"bn": False}})
    data = export(model, (3, 32, 32))
    g = onnx.load_from_string(data)
    assert sum(n.op_type == "Identity" for n in g.graph.node) > 0
    net = from_bytes(data)
    state = {k: v + 0.5 for k, v in net.state_dict().items() if k in net.onnx_names}
    back = onnx.load_from_string(rectified_onnx(data, net.onnx_state_dict(state)))
    names = {t.name for t in back.graph.initializer}
    assert set(net.onnx_names.values()) <= names
    assert not any(n.op_type == "Identity" and n.output[0] in names for n in back.graph.node)


def _model_bytes(nodes, inputs, outputs, inits=(), opset=17, domain=""):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, opset)]).SerializeToString()


X = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])


def test_check_refuses_bad_uploads_naming_the_cause():
    ok, _ = _hand_graph()
    s = check(ok)
    assert s.opset == 17 and s.input_shape == ["N", 3, 8, 8] and s.params == 4 * 27 + 4 + 4 * 4 + 4 * 5 + 5  # conv w, b; BN's four vectors; fc W, b
    with pytest.raises(SpecError, match="over the cap"):
        check(ok, max_bytes=100)
    with pytest.raises(SpecError, match="empty"):
        check(b"")
    with pytest.raises(SpecError, match="not an ONNX model"):
        check(b"\x00garbage" * 50)
    t0 = time.perf_counter()
    loop = _model_bytes([helper.make_node("Resize", ["x", "", "sc"], ["y"], name="up")], [X], [Y],
                        [numpy_helper.from_array(np.ones(4, np.float32), "sc")])
    with pytest.raises(SpecError, match="operator 'Resize' \\(node 'up'\\) is not supported"):
        check(loop)
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(SpecError, match="opset 9"):
        check(_model_bytes([helper.make_node("Relu", ["x"], ["y"])], [X], [Y], opset=9))
    custom = helper.make_model(helper.make_graph([helper.make_node("Foo", ["x"], ["y"], domain="my.ops")], "g", [X], [Y]),
                               opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("my.ops", 1)])
    with pytest.raises(SpecError, match="custom"):
        check(custom.SerializeToString())
    two = _model_bytes([helper.make_node("Add", ["x", "x2"], ["y"])],
                       [X, helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 3, 8, 8])], [Y])
    with pytest.raises(SpecError, match="exactly one input"):
        check(two)
    ext = onnx.load_from_string(ok)
    w = ext.graph.initializer[0]
    w.ClearField("raw_data")
    del w.float_data[:]
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="/etc/passwd")
    with pytest.raises(SpecError, match="external data"):
        check(ext.SerializeToString())


def test_a_graph_that_would_allocate_a_huge_tensor_is_refused_before_allocating():
    """ConstantOfShape / Expand / Pad take their sizes from the graph: a tiny file could ask for terabytes."""
    shape = numpy_helper.from_array(np.array([2**20, 2**20], np.int64), "big")
    nodes = [helper.make_node("ConstantOfShape", ["big"], ["z"]),
             helper.make_node("ReduceMean", ["z"], ["m"], keepdims=0),
             helper.make_node("Add", ["x", "m"], ["y"])]
    data = _model_bytes(nodes, [X], [Y], [shape])
    net = from_bytes(data)
    with pytest.raises(SpecError, match="ConstantOfShape would create a tensor of shape \\[1048576, 1048576\\]"):
        net(torch.zeros(1, 3, 8, 8))
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 2**16, 2**16], np.int64), "p")
    net = from_bytes(_model_bytes([helper.make_node("Pad", ["x", "p"], ["y"])], [X], [Y], [pads]))
    with pytest.raises(SpecError, match="Pad would create"):
        net(torch.zeros(1, 3, 8, 8))
