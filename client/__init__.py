"""Python client of the initscore service (torch-free; `Client.load_rectified` imports torch lazily)."""
from client.client import Client
from client.errors import (
    AuthError,
    ConflictError,
    JobFailed,
    NotFoundError,
    ServiceError,
    UnavailableError,
    ValidationFailed,
)

__all__ = ["AuthError", "Client", "ConflictError", "JobFailed", "NotFoundError", "ServiceError", "UnavailableError", "ValidationFailed"]
