"""The server core shared by the API (`service`) and the workers (`worker`); torch-free.

- `settings`: every ``INITSCORE_*`` variable of a deployment (one pydantic-settings model);
- `records`: the job record; `index`: where records live (Redis or memory, compare-and-set updates);
- `storage`: the content-addressed artifact store; `defaults`: queue names, timeouts, TTLs and the
  job function's dotted name;
- `lifecycle`: the named transitions of a job (start, finish, fail, cancel, requeue), each one
  compare-and-set, one persist, one event;
- `queue`: the queued (RQ) and inline backends and the abandoned-job sweep (the reaper).

Neither `service` nor `worker` is imported here (tests/test_imports.py): the API reaches the
worker only through `defaults.JOB_FUNCTION`, a dotted name that RQ resolves in a worker and the
inline backend resolves with importlib.
"""
