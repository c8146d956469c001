"""``{"arch": "onnx", "args": {"sha256": ...}}``: a network the user uploaded as ONNX (torch-free declaration).

The file is content-addressed: ``sha256`` names an upload of the caller's (``POST /v1/models``). The service
builds the network from the stored file (:func:`initscore.onnx_model.from_bytes`: its parameters are the file's
initializers, so the user's own initialization is what gets scored and rectified); the spec alone carries no
weights, so outside a job the library builds from the bytes directly.
"""
from __future__ import annotations

import re

from initscore.errors import SpecError
from initscore.models.registry import Arg, register_model

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _is_sha(v: str) -> str | None:
    return None if _HEX64.match(v) else "must be the 64 lowercase hex digits of an uploaded file's sha256"


@register_model("onnx", family="onnx", args={"sha256": Arg("str", required=True, check=_is_sha,
                                                           help="sha256 of the uploaded .onnx file (POST /v1/models)")})
def onnx_model(sha256: str):
    """Your own network, uploaded as ONNX, with its own initial weights."""
    raise SpecError("an 'onnx' spec is built from its uploaded file inside a job (initscore.jobs.run_job with "
                    "model_file=...); in the library use initscore.onnx_model.from_bytes(data)")
