"""The initscore scoring service: FastAPI front end, job index, artifact store.

Torch-free by design: importing ``service`` (or ``service.app``) never imports
torch; model specs are validated with the torch-free registry and the engine runs
only in workers (``worker/``) or, in inline mode, lazily in a background thread.
"""
