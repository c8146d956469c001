"""The rectified-weights file: safetensors tensors plus one :class:`Provenance` record.

This module is the only writer and reader of the format; the CLI, the worker and the client all
go through it. A file is a plain safetensors file (Hugging Face's format: an 8-byte little-endian
header length, a JSON header, raw tensor bytes; no pickle). Its string metadata holds:

  format            "initscore-weights"
  format_version    "1"
  kind              the job kind that made it ("rectify")
  arch              the architecture name (for a quick look)
  request           the contract request as canonical JSON (model, data, options, init_seed)
  request_hash      :func:`initscore.contract.request_hash` of that request
  versions          JSON {"initscore", "engine", "torch"}
  summary           JSON: what the run found (gamma used, scales, held-out scores, returned iterate, ...)

``read_provenance`` parses only the header, so it needs neither torch nor the tensors.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from initscore.errors import OptionsError

FORMAT = "initscore-weights"
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit on the JSON header


class Provenance(BaseModel):
    """Where a weights file came from: the request that made it, the versions and a summary of the run."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["initscore-weights"] = FORMAT
    format_version: Literal[1] = 1
    kind: str = "rectify"
    arch: str = ""
    request: dict[str, Any]
    request_hash: str
    versions: dict[str, str] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def for_request(cls, request: dict[str, Any], request_hash: str | None = None,
                    summary: dict[str, Any] | None = None) -> Provenance:
        """A record for ``request`` (a contract request as JSON); its hash is computed when not given."""
        if request_hash is None:
            from pydantic import TypeAdapter

            from initscore.contract import JobRequest, request_hash as hash_of

            request_hash = hash_of(TypeAdapter(JobRequest).validate_python(request))
        return cls(kind=str(request.get("kind", "rectify")), arch=str(request.get("model", {}).get("arch", "")),
                   request=request, request_hash=request_hash, versions=versions(), summary=summary or {})

    def to_metadata(self) -> dict[str, str]:
        d = self.model_dump(mode="json")
        return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in d.items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str] | None) -> Provenance:
        meta = meta or {}
        if meta.get("format") != FORMAT:
            raise OptionsError(f"not an initscore weights file (metadata format {meta.get('format')!r})")
        fields: dict[str, Any] = {}
        for k, v in meta.items():
            fields[k] = v if k in ("format", "kind", "arch", "request_hash") else json.loads(v)
        return cls.model_validate(fields)


def versions() -> dict[str, str]:
    """initscore, engine and torch versions of this process (torch only if it is already imported)."""
    import sys

    import initscore
    from initscore.contract import ENGINE_VERSION

    out = {"initscore": initscore.__version__, "engine": ENGINE_VERSION}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.__version__
    return out


def to_bytes(state_dict: dict[str, Any], provenance: Provenance) -> bytes:
    """The file's bytes: every tensor copied to contiguous CPU memory, provenance as string metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    return save(tensors, metadata=provenance.to_metadata())


def save(path: str | Path, state_dict: dict[str, Any], provenance: Provenance) -> str:
    """Write the file at ``path`` (must end in .safetensors; parent directories made); return its sha256."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise OptionsError(f"a weights file must end in .safetensors, got {str(path)!r}")
    data = to_bytes(state_dict, provenance)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _read(source: str | Path | bytes) -> bytes:
    return source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()


def read_provenance(source: str | Path | bytes) -> Provenance:
    """The provenance of a weights file (path or bytes) from its header alone (no torch)."""
    data = _read(source)
    if len(data) < 8:
        raise OptionsError("not a safetensors file: shorter than its 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(MAX_HEADER_BYTES, len(data) - 8):
        raise OptionsError("not a safetensors file: header length out of range")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise OptionsError("not a safetensors file: its header is not JSON") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return Provenance.from_metadata(meta)


def load(source: str | Path | bytes) -> tuple[dict[str, Any], Provenance]:
    """(state dict of CPU tensors, provenance) of a weights file given as a path or bytes."""
    from safetensors.torch import load as load_bytes

    data = _read(source)
    provenance = read_provenance(data)
    return load_bytes(bytes(data)), provenance


SUMMARY_KEYS = ("method", "gamma", "select", "returned_iterate", "scales", "unscalable", "fixed",
                "heldout_before", "heldout_after", "verification")


def summary_of(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a rectify result (``RectifyResult`` as JSON) a weights file carries: what the weights are."""
    return {k: result[k] for k in SUMMARY_KEYS if k in result}
