"""The server core shared by the API (`service`) and the workers (`worker`); torch-free.

- `settings`: every ``INITSCORE_*`` variable of a deployment (one pydantic-settings model);
- `records`: the job record; `index`: where records live (Redis or memory, compare-and-set updates);
- `storage`: the content-addressed artifact store; `defaults`: queue names, timeouts, TTLs and the
  job function's dotted name;
- `queue`: the queued (RQ) and inline backends and the abandoned-job sweep.
"""
