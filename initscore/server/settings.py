"""Service settings (pydantic-settings), one environment prefix: ``INITSCORE_``.

Every field below is read from ``INITSCORE_<FIELD NAME IN CAPITALS>``; list fields
accept JSON (``["a","b"]``) or a comma-separated string (``a,b``). See
docs/service.md for the table. Paths are made absolute when the settings are built
(``artifact_dir`` against the working directory, ``allowed_roots`` to their real
paths), so nothing later depends on a process's working directory.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_REPO = Path(__file__).resolve().parents[2]
_SHARED_DATA = _REPO.parent / "shared" / "data"


def _default_roots() -> list[str]:
    return [str(_SHARED_DATA)] if _SHARED_DATA.is_dir() else []


def default_artifact_dir() -> Path:
    """``$XDG_DATA_HOME/initscore/artifacts`` (``~/.local/share/...`` when unset): the same for every process of a user."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "initscore" / "artifacts"


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Deployment configuration of the API, the workers and the inline mode."""

    model_config = SettingsConfigDict(env_prefix="INITSCORE_", extra="ignore", frozen=True)

    # where things live
    redis_url: str | None = Field(
        default=None, description="Redis URL of the queue and job index; unset -> inline mode only"
    )
    artifact_dir: Path = Field(
        default_factory=default_artifact_dir,
        description="content-addressed artifact store shared by API and workers (absolute; a relative value is resolved once, at start-up)",
    )
    allowed_roots: CsvList = Field(default_factory=_default_roots, description="dataset roots a data ref may point under")

    # access
    api_keys: CsvList = Field(default_factory=list, description="sha256 hex digests of accepted API keys; empty -> open mode")
    admin_keys: CsvList = Field(default_factory=list, description="sha256 hex digests of admin keys (see every job)")

    # request limits
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="largest accepted request body")
    max_batch_size: int = Field(default=1024, ge=1, description="largest data.batch_size")
    max_iters: int = Field(default=10_000, ge=0, description="largest rectify options.iters")
    max_params: int = Field(default=200_000_000, ge=1, description="parameter cap per model spec")
    max_model_bytes: int = Field(default=64 * 2**20, ge=1024, description="largest ONNX upload (POST /v1/models)")
    max_batch_models: int = Field(default=1000, ge=1, description="most model specs in one batch job")
    max_input_elements: int = Field(
        default=64 * 3 * 224 * 224 * 4, ge=1, description="cap on batch_size x prod(synthetic shape)"
    )
    max_data_bytes: int = Field(
        default=1 << 30, ge=1 << 20, description="decoded data per job (samples x values x 4 bytes; npz members by their headers)"
    )
    max_data_samples: int = Field(default=1_000_000, ge=1, description="samples decoded per job")
    max_wait_seconds: float = Field(default=30.0, ge=0, description="cap on GET /v1/jobs/{id}?wait=")
    max_list_limit: int = Field(default=200, ge=1, description="largest page of GET /v1/jobs")

    # behaviour
    reuse_results: bool = Field(default=True, description="answer identical requests from a stored result")
    inline_workers: int = Field(default=1, ge=1, description="threads that run jobs in inline mode")
    heartbeat_ttl: float = Field(default=30.0, gt=0, description="a running job without a heartbeat this long is abandoned")
    reaper_interval: float = Field(default=5.0, gt=0, description="seconds between abandoned-job sweeps in the API")
    worker_beat_window: float = Field(
        default=20.0, gt=0, description="/readyz counts a worker as alive if it beat within this many seconds (it beats every window/4)"
    )
    redis_patience: float = Field(
        default=300.0, ge=0, description="seconds a worker retries Redis for a running job before handing the attempt to RQ's retry"
    )
    max_attempts: int = Field(default=2, ge=1, description="runs of a job whose worker died (1 = never re-queue)")
    worker_nice: int = Field(
        default=10, ge=0, le=19,
        description="CPU niceness a worker process raises itself to at start (0 = leave it); the API stays at its own",
    )
    record_ttl: int = Field(default=30 * 24 * 3600, ge=60, description="seconds a job record stays in Redis")
    result_cache_bytes: int = Field(
        default=2 << 20, ge=0, description="bytes of result JSON the API keeps parsed in memory (LRU; 0 = no cache)"
    )
    log_level: str = Field(default="info")

    @field_validator("api_keys", "admin_keys", "allowed_roots", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            s = v.strip()
            if s.startswith("["):
                import json

                return json.loads(s)
            return [p.strip() for p in s.split(",") if p.strip()]
        return v

    @field_validator("artifact_dir", mode="after")
    @classmethod
    def _absolute_dir(cls, v: Path) -> Path:
        return Path(os.path.abspath(os.path.expanduser(v)))

    @field_validator("allowed_roots", mode="after")
    @classmethod
    def _real_roots(cls, v: list[str]) -> list[str]:
        return [os.path.realpath(os.path.expanduser(r)) for r in v]

    @field_validator("api_keys", "admin_keys")
    @classmethod
    def _hex(cls, v: list[str]) -> list[str]:
        out = []
        for h in v:
            h = h.strip().lower()
            if len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
                raise ValueError("api key entries are sha256 hex digests (64 hex chars): store hashes, not keys")
            out.append(h)
        return out

    @property
    def open_mode(self) -> bool:
        return not self.api_keys and not self.admin_keys

    @property
    def inline(self) -> bool:
        return self.redis_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment (cached)."""
    return Settings()
