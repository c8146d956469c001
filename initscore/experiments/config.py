"""Experiment configuration (torch-free): what to train, on which data, from which initializations.

An :class:`ExperimentConfig` is a frozen pydantic model, JSON round-trippable
(``model_dump(mode="json")`` / ``ExperimentConfig.model_validate``), so the exact
configuration is stored next to every result. :data:`PRESETS` holds the named
configurations (``cpu``, ``gpu``, ``gpu-vit``, ``smoke``, ``paper-cifar``, ``paper-cifar100``);
:data:`NIO_PRESETS` the named NIO settings (``paper-cifar``, ``paper-imagenet``, ``official-imagenet``) that
``initscore rectify --preset`` applies.

The training recipe (:class:`RecipeConfig`) is fixed by the issue and the paper's
Appendix B.2 (which follows GradInit's CIFAR setup): SGD with momentum 0.9, cosine
learning-rate schedule (per iteration, to 0), weight decay 1e-4, standard CIFAR
augmentation (random 32x32 crop of the 4-pixel zero-padded image + horizontal
flip), gradient-norm clipping at 1.0 only for networks without BatchNorm
(``clip_grad_norm="auto"``). Three further pieces of GradInit's CIFAR script (``train_cifar.py`` and
``launch/run_gradinit*.sh`` in zhuchen03/gradinit), off by default and on in the ``gpu`` preset:
Cutout with one 16-pixel hole, no weight decay on BatchNorm's affine parameters, and biases at a
tenth of the learning rate in networks without BatchNorm.
"""
from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from initscore.contract import RectifyOptions
from initscore.errors import OptionsError

Method = Literal["kaiming", "nio", "gradinit", "metainit"]
METHODS: tuple[str, ...] = ("kaiming", "nio", "gradinit", "metainit")
Scalar = Union[bool, int, float, str]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelConfig(_Model):
    """A registered architecture (``initscore.models``) and a label used in tables and file names."""

    arch: str = Field(min_length=1, max_length=200)
    args: dict[str, Scalar] = Field(default_factory=dict)
    label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    init: dict[str, Any] | None = Field(
        default=None, description="this model's overrides of the experiment's init (InitConfig fields), e.g. "
                                  "{\"rectify\": {\"scale_tensors\": [\"fc.weight\"]}}; checked against "
                                  "InitConfig; rectify options given flat are moved under 'rectify'")

    @field_validator("init")
    @classmethod
    def _nest_init(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if v is None else nest_init(v)

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        safe = "".join(c if c.isalnum() or c in "_.-" else "_" for c in self.arch)
        extra = "_".join(f"{k}{v}" for k, v in sorted(self.args.items()))
        return f"{safe}_{extra}" if extra else safe

    def spec(self) -> dict[str, Any]:
        return {"arch": self.arch, "args": dict(self.args)}


class DataConfig(_Model):
    """Training / held-out / test samples.

    kind cifar10/cifar100: ``root`` (None = the repo's ../shared/data/cifar10_jpeg or
    $INITSCORE_DATA_ROOT). ``train_size`` + ``heldout_size`` samples are drawn (seeded)
    from the train split and split disjointly: the held-out part is used ONLY to
    measure GradCosine/GradNorm before and after rectification (never by NIO's
    optimization, never trained on). ``train_size=None`` uses the whole split minus the
    held-out part. ``test_size=None`` uses the whole test split.
    kind synthetic: seeded Gaussian inputs of ``shape`` with random labels (for tests).
    """

    kind: Literal["cifar10", "cifar100", "synthetic"] = "cifar10"
    root: str | None = None
    train_size: int | None = Field(default=10_000, ge=2)
    test_size: int | None = Field(default=2_000, ge=1)
    heldout_size: int = Field(default=128, ge=2)
    heldout_batch_size: int = Field(default=64, ge=2)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    shape: tuple[int, ...] = (3, 32, 32)
    num_classes: int = Field(default=10, ge=2)

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.heldout_batch_size > self.heldout_size:
            raise ValueError(f"heldout_batch_size {self.heldout_batch_size} > heldout_size {self.heldout_size}")
        if self.kind == "synthetic" and (self.train_size is None or self.test_size is None):
            raise ValueError("synthetic data needs explicit train_size and test_size")
        return self


class RecipeConfig(_Model):
    """The fixed training recipe (see the module docstring). ``warmup_epochs`` = linear warmup (0 = none)."""

    epochs: int = Field(default=3, ge=1, le=10_000)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=0.1, gt=0.0, le=100.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=1e-4, ge=0.0, le=1.0)
    schedule: Literal["cosine"] = "cosine"
    warmup_epochs: float = Field(default=0.0, ge=0.0)
    augment: bool = True
    crop_padding: int = Field(default=4, ge=0, le=64)
    clip_grad_norm: float | Literal["auto"] | None = "auto"
    eval_batch_size: int = Field(default=500, ge=1)
    cutout: int = Field(default=0, ge=0, le=64,
                        description="side of one square hole zeroed per training image after crop/flip (Cutout, "
                                    "DeVries & Taylor 2017; GradInit's CIFAR runs: 16); 0 = off")
    bn_weight_decay: bool = Field(default=True, description="False: no weight decay on BatchNorm weight/bias (GradInit)")
    nobn_bias_lr_scale: float = Field(default=1.0, gt=0.0, le=1.0,
                                      description="learning-rate factor of bias tensors in networks without "
                                                  "BatchNorm (GradInit: 0.1)")

    @field_validator("clip_grad_norm")
    @classmethod
    def _clip(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
            raise ValueError("clip_grad_norm must be > 0, 'auto' or null")
        return v

    @model_validator(mode="after")
    def _check(self) -> "RecipeConfig":
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} must be < epochs {self.epochs}")
        return self


#: Rectify options an experiment sets per run (``methods``, ``seeds``) or does not use (the job driver's held-out
#: split; an experiment's held-out data is ``data.heldout_size``).
PER_RUN = ("method", "seed", "heldout_batches")
BASELINES: tuple[str, ...] = ("gradinit", "metainit")


def nest_init(init: dict[str, Any]) -> dict[str, Any]:
    """An init dict with its rectify options under ``"rectify"``: a key of a flat init (the form before
    InitConfig composed RectifyOptions, e.g. ``{"iters": 20, "lr": 0.1, "batch_size": 64}``) that is not one of
    InitConfig's own fields moves there. A key given both flat and nested is an error."""
    own = InitConfig.model_fields
    flat = {k: v for k, v in init.items() if k not in own}
    if not flat:
        return dict(init)
    nested = init.get("rectify") or {}
    if isinstance(nested, BaseModel):
        nested = nested.model_dump(exclude_unset=True)
    if not isinstance(nested, dict):
        return dict(init)  # the field's own validation names the bad value
    twice = sorted(set(flat) & set(nested))
    if twice:
        raise ValueError(f"{twice} given both flat and under 'rectify'")
    return {**{k: v for k, v in init.items() if k in own}, "rectify": {**nested, **flat}}


class InitConfig(_Model):
    """How nio/gradinit/metainit rectify the initialization: ``rectify`` is the engine's own options model
    (:class:`initscore.contract.RectifyOptions`, passed to ``initscore.nio.rectify`` as it is; its ``method`` and
    ``seed`` come from the experiment's ``methods`` and ``seeds``), plus what only an experiment decides.

    ``batch_size`` training samples per rectification iteration; ``gamma_factor`` sets gamma to that factor x
    the first batch's g_max; ``heldout_mode`` is how the held-out scores of the tables are measured in ADDITION
    to the rectification's own mode ("sample" = exact Algorithm 1). ``baseline_mode`` /
    ``baseline_batch_size`` let GradInit and MetaInit keep their batch-mode loop while NIO runs in sample mode
    (sample mode with BN uses calibrated statistics, which would change the baselines' objectives). For the
    baselines, ``rectify.scale_tensors`` is not applied (they scale every tensor, as published) and
    ``select="best"`` (NIO's objective) becomes "feasible" (:meth:`options_for`).

    A flat init (the rectify options beside these fields) is read as well: :func:`nest_init`.
    """

    rectify: RectifyOptions = Field(default_factory=RectifyOptions,
                                    description="the rectification's options (initscore.contract.RectifyOptions)")
    batch_size: int = Field(default=64, ge=2, description="training samples per rectification iteration")
    gamma_factor: float | None = Field(
        default=None, gt=0.0,
        description="gamma = factor x the g_max of the first rectification batch (overrides rectify.gamma); "
                    "None with gamma None = the engine default (2x)")
    heldout_mode: Literal["sample", "batch"] = "sample"
    baseline_mode: Literal["batch", "sample"] | None = Field(
        default=None, description="mode of gradinit/metainit's loop (BN statistics, g_max); None = rectify.mode")
    baseline_batch_size: int | None = Field(
        default=None, ge=2, description="batch size of gradinit/metainit's iterations; None = batch_size")

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        return nest_init(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _per_run(self) -> "InitConfig":
        given = [k for k in PER_RUN if getattr(self.rectify, k) != RectifyOptions.model_fields[k].default]
        if given:  # a default value is accepted: a dumped config lists every field
            raise ValueError(f"rectify.{given[0]} is not an experiment option: the methods and seeds lists set "
                             "method and seed per run, and data.heldout_size the held-out data")
        return self

    def options_for(self, method: str, seed: int = 0) -> RectifyOptions:
        """The RectifyOptions of one run: ``rectify`` with ``method`` and ``seed``; for gradinit/metainit also
        ``baseline_mode``; for every method but nio no ``scale_tensors`` and "feasible" for ``select="best"``.
        Raises pydantic.ValidationError if the method does not take these options."""
        changes: dict[str, Any] = {"method": method, "seed": seed}
        if method in BASELINES and self.baseline_mode is not None:
            changes["mode"] = self.baseline_mode
        if method != "nio":
            if self.rectify.scale_tensors is not None:
                changes["scale_tensors"] = None
            if self.rectify.select == "best":
                changes["select"] = "feasible"
        return self.rectify.updated(**changes)

    def batch_size_for(self, method: str) -> int:
        """Samples per iteration of ``method``: ``baseline_batch_size`` (if set) for gradinit/metainit."""
        if method in BASELINES and self.baseline_batch_size is not None:
            return self.baseline_batch_size
        return self.batch_size


class ExperimentConfig(_Model):
    """One comparison: every (model, seed, method) is initialized, rectified and trained."""

    name: str = Field(default="experiment", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    models: tuple[ModelConfig, ...] = Field(min_length=1)
    data: DataConfig = Field(default_factory=DataConfig)
    methods: tuple[Method, ...] = Field(default=METHODS, min_length=1)
    seeds: tuple[int, ...] = Field(default=(0, 1, 2), min_length=1)
    recipe: RecipeConfig = Field(default_factory=RecipeConfig)
    init: InitConfig = Field(default_factory=InitConfig)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(default=2, ge=1, le=1024, description="torch.set_num_threads on CPU (None: leave)")

    @field_validator("methods", "seeds")
    @classmethod
    def _unique(cls, v: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"entries must be unique, got {list(v)}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seed_range(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for s in v:
            if not 0 <= s <= 2**31 - 1:
                raise ValueError(f"seeds must be in 0..2**31-1, got {s}")
        return v

    @model_validator(mode="after")
    def _labels(self) -> "ExperimentConfig":
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model labels must be unique, got {names}; set 'label'")
        for m in self.models:  # every model's init (its overrides applied) must give valid options for every method
            where = f"model {m.name!r}: init"
            try:
                init = self.init_for(m)
                for method in self.methods:
                    where = f"model {m.name!r}, method {method!r}: init.rectify"
                    init.options_for(method)
            except ValidationError as exc:
                e = exc.errors()[0]
                loc = ".".join(str(p) for p in e.get("loc", ()))
                msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
                raise ValueError(f"{where}{'.' + loc if loc else ''}: {msg}") from None
        return self

    def init_for(self, model: ModelConfig) -> InitConfig:
        """The init hyperparameters of ``model``: the experiment's ``init`` with the model's overrides (its
        ``rectify`` entries replace those options one by one; options derived from others, like the optimizer
        from the profile, are derived again unless set)."""
        if not model.init:
            return self.init
        own = dict(model.init)
        rect = own.pop("rectify", None) or {}
        merged = {**self.init.model_dump(exclude={"rectify"}), **own,
                  "rectify": {**self.init.rectify.model_dump(exclude_unset=True), **rect}}
        if "gamma" in rect and "gamma_factor" not in own:
            merged["gamma_factor"] = None  # gamma_factor overrides gamma: the model's own bound must win
        return InitConfig.model_validate(merged)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "config"
        parts.append(f"{loc}: {str(e.get('msg', 'invalid')).removeprefix('Value error, ')}")
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return "invalid experiment config: " + "; ".join(parts) + more


def parse_config(obj: ExperimentConfig | dict[str, Any]) -> ExperimentConfig:
    """Validate a config dict (or pass a config through); raise OptionsError with one line on error."""
    if isinstance(obj, ExperimentConfig):
        return obj
    if not isinstance(obj, dict):
        raise OptionsError(f"an experiment config is a JSON object, got {type(obj).__name__}")
    try:
        return ExperimentConfig.model_validate(obj)
    except ValidationError as exc:
        raise OptionsError(_one_line(exc)) from None


def override(cfg: ExperimentConfig, **changes: Any) -> ExperimentConfig:
    """A copy of ``cfg`` with nested changes, e.g. ``override(cfg, recipe={"epochs": 1}, seeds=[0])``, validated.
    An ``init`` change's ``rectify`` replaces the whole options; rectify options given flat in it (``init={"iters":
    5}``) replace those options one by one."""
    data = cfg.model_dump(mode="json")
    for key, value in changes.items():
        if value is None:
            continue
        if key not in data:
            raise OptionsError(f"unknown experiment config field {key!r}; allowed: {sorted(data)}")
        if key == "init" and isinstance(value, dict):
            flat = {k: v for k, v in value.items() if k not in InitConfig.model_fields}
            value = {k: v for k, v in value.items() if k in InitConfig.model_fields}
            if flat:
                value["rectify"] = {**(value.get("rectify") or data["init"]["rectify"]), **flat}
        if isinstance(value, dict) and isinstance(data[key], dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return parse_config(data)


# ------------------------------------------------------------------ presets
_RESNET20_NOBN = ModelConfig(arch="resnet20", args={"bn": False}, label="resnet20_nobn")
# The cpu preset's no-BN model: NIO scales only the classifier's weight (scale_tensors applies to NIO only; the
# baselines scale every tensor, as published). On the tuning seeds 10-13 (data seed 1, pools of 2k and 10k) this
# raised held-out exact GC on 8/8 rectification-only runs against 6/8 with every tensor scaled, and on seeds 10/11
# trained at least as well as Kaiming (research/nio_investigation.md, "Follow-up 4").
_RESNET20_NOBN_CPU = _RESNET20_NOBN.model_copy(update={"init": {"rectify": {"scale_tensors": ["fc.weight"]}}})
_RESNET20_BN = ModelConfig(arch="resnet20", args={"bn": True}, label="resnet20_bn")

PRESETS: dict[str, ExperimentConfig] = {
    # Sized for a 2-core CPU: 24 runs (2 models x 4 methods x 3 seeds); run times in docs/results/training.md.
    "cpu": ExperimentConfig(
        name="cpu",
        models=(_RESNET20_NOBN_CPU, _RESNET20_BN),
        data=DataConfig(train_size=10_000, test_size=2_000, heldout_size=128, heldout_batch_size=64),
        seeds=(0, 1, 2),
        recipe=RecipeConfig(epochs=2, batch_size=128, lr=0.1),
        # NIO: exact sample-wise objective (Algorithm 1's GC; batch-mode GC with D=2, r=0.6 is
        # saturated near 1 and gives no signal) on batches of 64, g_max kept 30 % below gamma and
        # the last iterate within that bound returned (research/nio_investigation.md: chosen on seeds 10/11,
        # data seed 1). GradInit/MetaInit keep their batch-mode loop on batches of 64.
        init=InitConfig(rectify=RectifyOptions(iters=20, lr=0.1, mode="sample", gamma_margin=0.3, select="feasible",
                                               sub_batches=2, overlap=0.6),
                        batch_size=64, baseline_mode="batch", baseline_batch_size=64),
        threads=2,
    ),
    # GradInit's CIFAR-10 recipe (which Appendix B.2 of the NIO paper says it follows): full training set,
    # 200 epochs (GradInit's; the NIO paper trains 500: preset "paper-cifar"), batch 128, lr 0.1, cosine, wd 1e-4,
    # clipping 1.0 without BN. For a CUDA machine (device auto-detected).
    "gpu": ExperimentConfig(
        name="gpu",
        models=(
            # Kaiming init of the no-BN ResNet-110 explodes (54 residual blocks, each doubling the variance:
            # per-sample gradient norms ~1e10-1e11), so gamma = 2x its first g_max bounds nothing; an absolute
            # bound instead, for NIO and GradInit (research/nio_investigation.md, "Follow-up 5"). 5 is Appendix B.2's value for
            # ResNet-110 WITH BN; its no-BN value is 4 (preset "paper-cifar"); kept at 5 here because the
            # reported runs used it
            ModelConfig(arch="resnet110", args={"bn": False}, label="resnet110_nobn",
                        init={"rectify": {"gamma": 5.0}}),
            ModelConfig(arch="resnet110", args={"bn": True}, label="resnet110_bn"),
            ModelConfig(arch="wrn28_10", args={"bn": False}, label="wrn28_10_nobn"),
            ModelConfig(arch="wrn28_10", args={"bn": True}, label="wrn28_10_bn"),
        ),
        data=DataConfig(train_size=None, test_size=None, heldout_size=256, heldout_batch_size=128),
        seeds=(0, 1, 2),
        # GradInit's train_cifar.py + launch scripts (which NIO's Appendix B.2 follows): cutout 16, BN params
        # without weight decay, no-BN biases at lr/10
        recipe=RecipeConfig(epochs=200, batch_size=128, lr=0.1, eval_batch_size=1000, cutout=16,
                            bn_weight_decay=False, nobn_bias_lr_scale=0.1),
        # same NIO settings as the cpu preset (sample mode, margin 0.3, feasible iterate), more iterations
        init=InitConfig(rectify=RectifyOptions(iters=100, lr=0.1, mode="sample", gamma_margin=0.3, select="feasible",
                                               sub_batches=2, overlap=0.6),
                        batch_size=64, baseline_mode="batch", baseline_batch_size=128, heldout_mode="batch"),
        threads=None,
    ),
    # Table 5 ANALOGUE on CIFAR-10, not Appendix B.3's setting (ImageNet, NIO tau = 3e-3, D = 4, r = 0.2, B = 64,
    # T = 100, Swin trained with AdamW): transformers trained WITHOUT warmup (warmup_epochs=0), SGD recipe, NIO
    # batch mode D = 8, r = 0, lr 0.01. The B.3 NIO settings are the "paper-imagenet" entry of NIO_PRESETS.
    "gpu-vit": ExperimentConfig(
        name="gpu-vit",
        models=(
            ModelConfig(arch="torchvision:swin_t", args={"num_classes": 10}, label="swin_t"),
            ModelConfig(arch="torchvision:vit_b_16", args={"num_classes": 10, "image_size": 32}, label="vit_b_16"),
        ),
        data=DataConfig(train_size=None, test_size=None, heldout_size=256, heldout_batch_size=64),
        methods=("kaiming", "nio"),
        seeds=(0, 1, 2),
        recipe=RecipeConfig(epochs=100, batch_size=128, lr=0.01, warmup_epochs=0.0, clip_grad_norm=None,
                            eval_batch_size=500),
        # batch mode with D=8 disjoint sub-batches (not saturated, unlike D=2 r=0.6) instead of the
        # sample mode of cpu/gpu: per-sample second-order graphs of ViT-B/Swin-T are untested here
        init=InitConfig(rectify=RectifyOptions(iters=100, lr=0.01, mode="batch", sub_batches=8, overlap=0.0,
                                               gamma_margin=0.3, select="feasible"),
                        batch_size=64, heldout_mode="batch"),
        threads=None,
    ),
    # A minute-sized sanity run on real CIFAR-10.
    "smoke": ExperimentConfig(
        name="smoke",
        models=(_RESNET20_NOBN,),
        data=DataConfig(train_size=512, test_size=256, heldout_size=64, heldout_batch_size=32),
        methods=("kaiming", "nio"),
        seeds=(0,),
        recipe=RecipeConfig(epochs=1, batch_size=64),
        init=InitConfig(rectify=RectifyOptions(iters=3), batch_size=32),
        threads=2,
    ),
}


# ------------------------------------------------------------- the NIO paper's and the released code's settings
PAPER = ("Yang, Wang, Yuan & Lin, \"Towards Theoretically Inspired Neural Initialization Optimization\", "
         "NeurIPS 2022, arXiv 2210.05956")

#: Where a preset's value comes from (``NioPreset.sources`` names one or more of these per value).
SOURCES: dict[str, str] = {
    "audit": f"Appendix B of {PAPER}, as restated in issue #25's audit of the paper; the appendix text itself could "
             "not be read in this project (docs/engine.md, 'What could be checked')",
    "algorithm": f"{PAPER}, Algorithm 3 and Eq. 6-8 (batch mode, Eq. 7 sub-batches, the 0.01 clamp), as audited in "
                 "issue #25",
    "released-config": "HarborYuan/GradCosine @ 006bb89, configs/mmcls/resnet_gradcos_init/resnet50_gc_gn.py, its "
                       "'initializer' dict (logs/init.txt of the same commit prints the same values)",
    "released-code": "HarborYuan/GradCosine @ 006bb89, gradcos/gradcos_initializer.py (its definitions and defaults)",
    "released-base": "HarborYuan/GradCosine @ 006bb89: the mmcls base config resnet50_8xb32_in1k.py that "
                     "resnet50_gc_gn.py extends, and its README's training command",
    "profile": "this project's name for the definitions a profile stands for (initscore.scores, docs/engine.md)",
    "engine-default": "no source value found: initscore's own default fills the gap (listed in 'unverified')",
}

# Appendix B.2's gammas that issue #25's audit restates; the WRN-28-10 gammas are not among them.
PAPER_CIFAR_GAMMA: dict[str, float] = {"resnet110_nobn": 4.0, "resnet110_bn": 5.0}


class NioPreset(_Model):
    """Named NIO settings (keyword arguments of ``initscore.nio.rectify``) and where each value comes from.

    ``gamma_by_model`` keys are ``"<arch>_bn"`` / ``"<arch>_nobn"`` and override ``rectify["gamma"]``;
    ``training`` records how the source trains afterwards (documentation: ``initscore rectify`` does not train).
    ``sources`` maps every value, named ``rectify.<key>``, ``batch_size``, ``gamma_by_model.<label>`` or
    ``training.<key>``, to the :data:`SOURCES` it comes from; ``unverified`` lists exactly the values whose
    source is ``engine-default`` (no source value found; ``rectify.gamma`` there means: for every model not in
    ``gamma_by_model``)."""

    source: str
    rectify: dict[str, Scalar | None]
    batch_size: int = Field(ge=1)
    gamma_by_model: dict[str, float] = Field(default_factory=dict)
    training: dict[str, Scalar] = Field(default_factory=dict)
    sources: dict[str, tuple[str, ...]]
    unverified: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _every_value_has_a_source(self) -> "NioPreset":
        keys = {f"rectify.{k}" for k in self.rectify} | {"batch_size"}
        keys |= {f"gamma_by_model.{k}" for k in self.gamma_by_model} | {f"training.{k}" for k in self.training}
        if set(self.sources) != keys:
            raise ValueError(f"sources must name every value: missing {sorted(keys - set(self.sources))}, "
                             f"unknown {sorted(set(self.sources) - keys)}")
        for key, names in self.sources.items():
            if not names or any(n not in SOURCES for n in names):
                raise ValueError(f"sources[{key!r}] must be one or more of {sorted(SOURCES)}, got {list(names)}")
        try:  # the values are RectifyOptions fields with valid values
            RectifyOptions.model_validate(self.rectify)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ValueError(f"rectify.{'.'.join(map(str, e['loc']))}: {e['msg']}") from None
        gaps = sorted(k for k, names in self.sources.items() if "engine-default" in names)
        if sorted(self.unverified) != gaps:
            raise ValueError(f"unverified must list exactly the engine-default values {gaps}, got "
                             f"{sorted(self.unverified)}")
        return self

    def kwargs_for(self, arch: str, bn: bool | None) -> dict[str, Any]:
        kw = dict(self.rectify)
        key = f"{arch}_{'bn' if bn else 'nobn'}"
        if key in self.gamma_by_model:
            kw["gamma"] = self.gamma_by_model[key]
        return kw


def _preset(rectify: dict[str, tuple[Scalar | None, tuple[str, ...]]], batch_size: tuple[int, tuple[str, ...]],
            *, source: str, gamma_by_model: dict[str, tuple[float, tuple[str, ...]]] | None = None,
            training: dict[str, tuple[Scalar, tuple[str, ...]]] | None = None) -> NioPreset:
    """A NioPreset from (value, sources) pairs, so a value and its source are written side by side."""
    gamma_by_model, training = gamma_by_model or {}, training or {}
    sources = {f"rectify.{k}": v[1] for k, v in rectify.items()}
    sources |= {"batch_size": batch_size[1]}
    sources |= {f"gamma_by_model.{k}": v[1] for k, v in gamma_by_model.items()}
    sources |= {f"training.{k}": v[1] for k, v in training.items()}
    return NioPreset(source=source, rectify={k: v[0] for k, v in rectify.items()}, batch_size=batch_size[0],
                     gamma_by_model={k: v[0] for k, v in gamma_by_model.items()},
                     training={k: v[0] for k, v in training.items()}, sources=sources,
                     unverified=tuple(sorted(k for k, v in sources.items() if "engine-default" in v)))


_AUDIT, _ALG, _GAP, _PROFILE = ("audit",), ("algorithm",), ("engine-default",), ("profile",)
_REL, _CODE = ("released-config",), ("released-code",)

NIO_PRESETS: dict[str, NioPreset] = {
    "paper-cifar": _preset(
        source=f"{PAPER}, Appendix B.2 (CIFAR-10 / CIFAR-100)",
        rectify={"profile": ("paper", _PROFILE), "mode": ("batch", _ALG), "sub_batches": (2, _GAP),
                 "overlap": (0.6, _GAP), "lr": (0.1, _GAP), "iters": (100, _GAP), "gamma": (None, _GAP),
                 "optimizer": ("adam", _GAP), "min_scale": (0.01, _ALG)},
        batch_size=(128, _AUDIT),
        gamma_by_model={k: (v, _AUDIT) for k, v in PAPER_CIFAR_GAMMA.items()},
        training={"epochs": (500, _AUDIT), "batch_size": (128, _AUDIT), "optimizer": ("sgd", _AUDIT),
                  "momentum": (0.9, _AUDIT), "lr": (0.1, _AUDIT), "weight_decay": (1e-4, _AUDIT),
                  "weight_decay_on": ("every parameter", _AUDIT), "cifar100_gamma_factor": (2.0, _AUDIT)}),
    # B.3's tau, D, r, B and T as the audit restates them are also the released ResNet-50 config's values
    "paper-imagenet": _preset(
        source=f"{PAPER}, Appendix B.3 (ImageNet: ResNet-50, Swin-T)",
        rectify={"profile": ("paper", _PROFILE), "mode": ("batch", _ALG), "sub_batches": (4, _AUDIT + _REL),
                 "overlap": (0.2, _AUDIT + _REL), "lr": (3e-3, _AUDIT + _REL), "iters": (100, _AUDIT + _REL),
                 "gamma": (None, _GAP), "optimizer": ("adam", _GAP), "min_scale": (0.01, _ALG)},
        batch_size=(64, _AUDIT + _REL),
        training={"swin_optimizer": ("adamw", _AUDIT), "warmup": ("none (the paper's Table 5 claim)", _AUDIT)}),
    "official-imagenet": _preset(
        source="HarborYuan/GradCosine @ 006bb89 configs/mmcls/resnet_gradcos_init/resnet50_gc_gn.py (initializer "
               "dict) and gradcos/gradcos_initializer.py",
        rectify={"profile": ("official", _PROFILE), "mode": ("batch", _CODE), "split": ("official", _CODE),
                 "bn": ("shared", _CODE), "sub_batches": (4, _REL), "overlap": (0.2, _REL), "lr": (3e-3, _REL),
                 "iters": (100, _REL), "gamma": (10.0, _REL), "optimizer": ("rescale_adam", _CODE),
                 "grad_clip": (1.0, _REL), "min_scale": (0.01, _REL), "objective": ("gc_gn_sqrt", _REL),
                 "gn_mul": (1.0, _REL)},
        batch_size=(64, _REL),
        training={"base_config": ("mmcls resnet50_8xb32_in1k (8 GPUs x 32, SGD)", ("released-base",)),
                  "init_data": ("the training set with its training augmentation, loader seed 0", _CODE),
                  "model_note": ("mmcls ResNet-50; its residual branches' last BN weights start at 0 "
                                 "(zero_init_residual), which the released optimizer then cannot rescale", _CODE)}),
}


def _paper_cifar(kind: Literal["cifar10", "cifar100"]) -> ExperimentConfig:
    """Appendix B.2 as a training comparison (Kaiming vs NIO on ResNet-110 and WRN-28-10, with and without BN):
    every NIO, recipe and gamma value is read from ``NIO_PRESETS["paper-cifar"]``, where each has its source."""
    p = NIO_PRESETS["paper-cifar"]
    t = p.training
    mul = float(t["cifar100_gamma_factor"]) if kind == "cifar100" else 1.0
    classes = 100 if kind == "cifar100" else 10

    def model(arch: str, bn: bool) -> ModelConfig:
        label = f"{arch}_{'bn' if bn else 'nobn'}"
        gamma = p.gamma_by_model.get(label)
        return ModelConfig(arch=arch, args={"bn": bn, "num_classes": classes}, label=label,
                           init=None if gamma is None else {"rectify": {"gamma": gamma * mul}})

    return ExperimentConfig(
        name="paper-cifar" if kind == "cifar10" else "paper-cifar100",
        models=(model("resnet110", False), model("resnet110", True), model("wrn28_10", False), model("wrn28_10", True)),
        data=DataConfig(kind=kind, train_size=None, test_size=None, heldout_size=256, heldout_batch_size=128,
                        num_classes=classes),
        methods=("kaiming", "nio"),
        seeds=(0, 1, 2),
        recipe=RecipeConfig(epochs=int(t["epochs"]), batch_size=int(t["batch_size"]), lr=float(t["lr"]),
                            momentum=float(t["momentum"]), weight_decay=float(t["weight_decay"]),
                            eval_batch_size=1000, bn_weight_decay=True),
        # Algorithm 3 as published: batch mode, Eq. 7 sub-batches, last iterate, no margin
        init=InitConfig(rectify=RectifyOptions.model_validate(p.rectify), batch_size=p.batch_size,
                        heldout_mode="batch"),
        threads=None,
    )


PRESETS["paper-cifar"] = _paper_cifar("cifar10")
PRESETS["paper-cifar100"] = _paper_cifar("cifar100")


def nio_preset(name: str) -> NioPreset:
    if name not in NIO_PRESETS:
        raise OptionsError(f"unknown NIO preset {name!r}; known: {sorted(NIO_PRESETS)}")
    return NIO_PRESETS[name]


def preset(name: str) -> ExperimentConfig:
    if name not in PRESETS:
        raise OptionsError(f"unknown experiment preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]
