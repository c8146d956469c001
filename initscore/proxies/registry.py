"""The proxy registry (torch-free): one entry per proxy with its name, definition, source, and pass.

Each proxy is registered with
  name         the key users pass (``initscore proxies --names``, the API, ``top_k(proxy=...)``)
  description  one line: the formula (higher = predicted better, always)
  source       the paper and the reference code its definition follows
  needs        the shared artifacts it reads (ARTIFACTS)
  builder      the pass that produces those artifacts and finishes the proxy; proxies with the same
               builder are computed together, so a pass runs once for the union of what they need

Adding a proxy: one new module (its formula and a ``register(...)`` call, or a finishing function
inside an existing pass) plus its test; `initscore.proxies.PROXIES` picks it up from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

ARTIFACTS: dict[str, str] = {
    "loss_gradients": "dL/dW of the mean cross-entropy on the batch, training-mode BN (one forward/backward)",
    "hessian_gradient": "H g, the Hessian of L times dL/dW (a create_graph backward and one more backward)",
    "input_jacobian": "d(sum of logits)/dx per sample, from the same forward",
    "layer_output_gradients": "dL/da of each Conv/Linear output a, read during the loss backward",
    "activation_codes": "1[ReLU input > 0] per sample, read during the forward",
    "per_sample_gradients": "dL_n/dtheta per sample, BN with per-sample statistics (one batched pass)",
    "sub_batch_gradients": "dL/dW on each of S consecutive sub-batches (S forward/backward passes)",
    "module_features": "every module's output on ONE sample (one forward of a batch of one)",
    "block_features": "the stem's and every cell's output on the batch, with their input-output VJPs",
    "reinit_relu_signs": "sign of every ReLU output of a N(0,1)-re-initialized copy on up to 16 samples",
    "abs_weight_flow": "gradients of the |W| float64 network without BN on an all-ones input",
    "block_jacobian_trace": "tr(J)/n of each outermost shape-preserving block on 4 samples (no-grad forwards, one Rademacher probe)",
    "gaussian_features": "pre-pooling features of a N(0,1) re-initialized copy on Gaussian inputs",
    "weights": "the parameters themselves",
    "shapes": "layer shapes (one no-grad forward of one sample)",
    "other_proxies": "values of other proxies of the same call",
}

# builder -> "module:function"; a builder is fn(model, x, y, names, chunks) -> dict | (values, errors)
BUILDERS: dict[str, str] = {
    "gradient_pass": "initscore.proxies.gradient_pass:shared_gradient_proxies",
    "per_sample": "initscore.proxies.per_sample:per_sample_proxies",
    "zico": "initscore.proxies.zico:zico_proxies",
    "meco": "initscore.proxies.meco:meco_proxies",
    "swap": "initscore.proxies.swap:swap_proxies",
    "az_nas": "initscore.proxies.az_nas:az_nas_proxies",
    "synflow": "initscore.proxies.data_free:synflow_group",
    "zen": "initscore.proxies.data_free:zen_group",
    "params": "initscore.proxies.data_free:params_group",
    "flops": "initscore.proxies.data_free:flops_group",
    "l2_norm": "initscore.proxies.l2_norm:l2_norm_group",
    "identity_gain": "initscore.proxies.identity_gain:identity_gain_group",
    "combined": "",  # computed from other proxies' values after the passes (engine._compute)
}


@dataclass(frozen=True)
class ProxyInfo:
    name: str
    description: str
    source: str
    needs: tuple[str, ...]
    builder: str


REGISTRY: dict[str, ProxyInfo] = {}


def register(name: str, description: str, source: str, needs: tuple[str, ...], builder: str) -> ProxyInfo:
    """Add a proxy; its artifacts and builder must be known."""
    unknown = [a for a in needs if a not in ARTIFACTS]
    if unknown:
        raise ValueError(f"proxy {name!r}: unknown artifacts {unknown}")
    if builder not in BUILDERS:
        raise ValueError(f"proxy {name!r}: unknown builder {builder!r}")
    if name in REGISTRY:
        raise ValueError(f"proxy {name!r} is already registered")
    info = ProxyInfo(name, description, source, tuple(needs), builder)
    REGISTRY[name] = info
    return info


def builder_fn(builder: str) -> Callable[..., Any]:
    mod, _, fn = BUILDERS[builder].partition(":")
    return getattr(import_module(mod), fn)


ZC = "zero-cost-nas (Abdelfattah et al., ICLR 2021), foresight/pruners/measures"
NASLIB = "NASLib (automl/NASLib) naslib/predictors/utils/pruners/measures"

register("grad_norm", "sum over Conv/Linear weight tensors of ||dL/dW||_2, cross-entropy on the batch",
         ZC, ("loss_gradients",), "gradient_pass")
register("snip", "sum |W * dL/dW| over Conv/Linear weights", f"Lee et al. ICLR 2019; {ZC}",
         ("loss_gradients", "weights"), "gradient_pass")
register("grasp", "sum of -W * (H g) over Conv/Linear weights, g = dL/dW, H the Hessian (zero-cost-nas sign)",
         f"Wang et al. ICLR 2020; {ZC}", ("loss_gradients", "hessian_gradient", "weights"), "gradient_pass")
register("fisher", "sum over Conv/Linear output channels of 0.5*mean_n(sum_spatial act*dL/dact)^2 times the channel's fan-in",
         f"Turner et al. ICLR 2020; {ZC}", ("layer_output_gradients",), "gradient_pass")
register("jacob_cov", "-sum_i log(l_i + 1e-5) + 1/(l_i + 1e-5), l_i eigenvalues of the correlation of per-sample input Jacobians of sum(logits)",
         f"Mellor et al. 2020 (v1); {ZC}", ("input_jacobian",), "gradient_pass")
register("naswot", "log|K_H|, K_H = sum over ReLUs of c c^T + (1-c)(1-c)^T of binary activation codes c",
         "Mellor et al. ICML 2021", ("activation_codes",), "gradient_pass")
register("epe_nas", "sum over classes c of |sum log(|corrcoef(J_c)| + 1e-5)|, J_c the input Jacobians of class c's samples (more than 100 classes: pairwise differences)",
         f"Lopes et al. ICANN 2021; {NASLIB}/epe_nas.py", ("input_jacobian",), "gradient_pass")
register("plain", "sum W * dL/dW over Conv/Linear weights (signed, no absolute value)",
         f"{NASLIB}/plain.py", ("loss_gradients", "weights"), "gradient_pass")
register("synflow", "sum |W * dR/dW|, R = sum of outputs of the |W| network without BatchNorm on an all-ones input, float64",
         f"Tanaka et al. NeurIPS 2020; {ZC}", ("abs_weight_flow",), "synflow")
register("gradsign", "sum over Conv/Linear weights of |sum_n sign(dL_n/dW)| of per-sample gradients",
         "Zhang & Jia, ICLR 2022", ("per_sample_gradients",), "per_sample")
register("zen", "log E|f(x) - f(x + 0.01 e)| of the pre-pooling features of the N(0,1)-initialized network plus sum log sqrt(mean BN running var)",
         "Lin et al. ICCV 2021", ("gaussian_features",), "zen")
register("params", "number of parameters", "baseline", ("weights",), "params")
register("flops", "multiply-accumulates per sample of Conv/Linear layers (analytic, forward hooks); AZ-NAS's complexity",
         "baseline; AZ-NAS (Lee & Ham, CVPR 2024) s^C", ("shapes",), "flops")
register("l2_norm", "sum over Conv/Linear layers of ||W||_2 (Frobenius norm of each weight tensor)",
         f"{NASLIB}/l2_norm.py", ("weights",), "l2_norm")
register("gradcosine", "GradCosine: mean pairwise cosine of per-sample gradients, BN with per-sample statistics (= initscore.scores.gradcosine(bn='per_sample'))",
         "Yang et al. NeurIPS 2022", ("per_sample_gradients",), "per_sample")
register("gradnorm", "GradNorm: mean norm of the per-sample gradients, from the same per-sample pass as gradcosine and gradsign",
         "Yang et al. NeurIPS 2022", ("per_sample_gradients",), "per_sample")
register("zico", "sum over Conv/Linear layers of log sum_theta mean_s|g_s| / std_s(g_s), g_s = dL/dW on sub-batch s (2 halves of the batch)",
         "Li et al. ICLR 2023 (ZiCo), SLDGroup/ZiCo ZeroShotProxy/compute_zico.py", ("sub_batch_gradients",), "zico")
register("meco", "sum over every module of lambda_min(corrcoef of its C output channels on ONE sample), NaN entries set to 0",
         "Jiang et al. NeurIPS 2023 (MeCo), the authors' correlation script (measure 'meco')", ("module_features",), "meco")
register("meco_opt", "MeCo on 8 seeded random channels per module: (C/8) * lambda_min(corrcoef of those 8 channels)",
         "Jiang et al. NeurIPS 2023 (MeCo_opt), the authors' correlation script (measure 'meco_opt')", ("module_features",), "meco")
register("swap", "number of distinct sample-wise activation patterns: unique rows of sign(ReLU outputs) (neurons x samples) of a N(0,1) re-initialized copy on 16 samples",
         "Peng et al. ICLR 2024 (SWAP-Score), src/metrics/swap.py", ("reinit_relu_signs",), "swap")
register("swap_reg", "swap * exp(-(P - mu)^2 / sigma), P = parameters in thousands (SWAP's size regularization; mu, sigma in initscore.proxies.swap)",
         "Peng et al. ICLR 2024 (regularized SWAP-Score), src/metrics/swap.py cal_regular_factor", ("reinit_relu_signs", "weights"), "swap")
register("az_expressivity", "sum over the stem and every cell of the entropy of the normalized eigenvalues of the channel covariance of its output",
         "Lee & Ham CVPR 2024 (AZ-NAS) s^E, cvlab-yonsei/AZ-NAS compute_az_nas_score", ("block_features",), "az_nas")
register("az_progressivity", "min over consecutive blocks of the increase of their expressivity entropies",
         "Lee & Ham CVPR 2024 (AZ-NAS) s^P", ("block_features",), "az_nas")
register("az_trainability", "mean over blocks of 2 - s - 1/s, s the top singular value of the block's input-output Jacobian sketch E[g_in g_out^T], g_out random +-1",
         "Lee & Ham CVPR 2024 (AZ-NAS) s^T", ("block_features",), "az_nas")
register("identity_gain", "min over the outermost shape-preserving blocks of tr(J)/n, J the block's input-output Jacobian at init (Hutchinson, one probe; 0 without such blocks): 1 per identity path, ~0 for random convolutions; a member of ensemble, negative alone",
         "this project (initscore.proxies.identity_gain)", ("block_jacobian_trace",), "identity_gain")
register("ensemble", "recommended score: sum of log Phi(z) over the calibrated z-scores of log10 synflow, meco, meco_opt, log10 swap and identity_gain (AZ-NAS's log-rank aggregation with each rank/N replaced by a normal CDF fixed on 200 separate calibration cells; docs/nas.md)",
         "this project (initscore.proxies.ensemble)", ("other_proxies",), "combined")
