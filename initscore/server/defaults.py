"""Every queue name, timeout and TTL of the server side, and the job function's dotted name, in one place."""
from __future__ import annotations

SCORE_QUEUE = "initscore-score"      # short jobs: score, batch, propagation, search
RECTIFY_QUEUE = "initscore-rectify"  # long jobs: rectify
QUEUES = (SCORE_QUEUE, RECTIFY_QUEUE)

QUEUE_FOR_KIND = {"score": SCORE_QUEUE, "batch": SCORE_QUEUE, "propagation": SCORE_QUEUE, "search": SCORE_QUEUE,
                  "rectify": RECTIFY_QUEUE}

# RQ job_timeout per kind (seconds): a job running longer is stopped and recorded as failed
TIMEOUT_FOR_KIND = {"score": 600, "batch": 3600, "propagation": 600, "search": 6 * 3600,
                    "rectify": 6 * 3600}

RESULT_TTL = 24 * 3600        # how long RQ keeps its own job hash after success (our record/result live longer)
FAILURE_TTL = 7 * 24 * 3600   # how long RQ keeps failed job hashes
IDEMPOTENCY_TTL = 24 * 3600   # how long an Idempotency-Key maps to its job

# transient faults (Redis connection errors that outlasted the worker's own patience, INITSCORE_REDIS_PATIENCE)
# are retried by RQ this many times, at once: a delay would need RQ's scheduler process (see worker.main)
TRANSIENT_RETRIES = 2
TRANSIENT_RETRY_INTERVALS = (0, 0)

PROGRESS_MIN_INTERVAL = 0.2   # seconds between two job.meta progress writes
# the job function, by name only: RQ imports it in a worker, the inline backend with importlib (queue.job_function)
JOB_FUNCTION = "worker.jobs.execute_job"
