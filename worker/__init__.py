"""RQ workers of the initscore service (JSON serializer only; no pickle anywhere)."""
