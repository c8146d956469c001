"""API routes: /v1/jobs, /v1/groups, /v1/models, health and metrics."""
