"""The job record: the index entry of one submitted job (torch-free, JSON-able).

The record is written to Redis (the index, with a TTL) and, at submission and at
every transition (:mod:`initscore.server.lifecycle`), to the artifact store under
``refs/jobs/<id>.json`` (the durable copy), so a finished job stays readable after a
Redis flush or TTL expiry.
Results, weights and plots are NOT in the record: it points at them by sha256.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from initscore.contract import FINAL_STATES, JobState
OPEN_OWNER = "anonymous"


class JobCancelled(Exception):
    """Raised inside a running job (from its progress callback) when a cancel was requested."""


class JobError(BaseModel):
    """Why a job failed: a problem-details-like triple (type slug, title, one-line detail)."""

    model_config = ConfigDict(extra="ignore")
    type: str
    title: str
    detail: str


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    kind: str
    status: JobState = "queued"
    owner: str
    request: dict[str, Any]
    request_hash: str
    seq: int = 0
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 1
    max_attempts: int = 1
    worker: str | None = None
    queue: str | None = None
    result_sha: str | None = None
    weights_sha: str | None = None
    plot_sha: str | None = None
    error: JobError | None = None
    cancel_requested: bool = False
    reused: bool = False
    group_id: str | None = None
    events: list[str] = Field(default_factory=list)
    progress: dict[str, Any] | None = None  # only in inline mode; queued mode reads RQ job.meta

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES

    def note(self, text: str) -> None:
        self.events.append(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}")


def new_job_id() -> str:
    """'j_' + 32 hex chars (uuid4)."""
    return "j_" + uuid.uuid4().hex


def group_id_for(job_id: str) -> str:
    """A batch job's group id: the job id with the 'g_' prefix (the group IS the batch job)."""
    return "g_" + job_id[2:]


def job_id_for_group(group_id: str) -> str | None:
    if not group_id.startswith("g_") or len(group_id) != 34:
        return None
    return "j_" + group_id[2:]
