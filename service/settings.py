"""Deprecated alias of :mod:`initscore.server.settings` (the settings of the API and the workers).

Kept because ``service.settings.Settings`` was documented for deployers who build the app
themselves (``service.app.create_app(Settings(...))``); import from ``initscore.server.settings``.
"""
from __future__ import annotations

from initscore.server.settings import Settings, default_artifact_dir, get_settings

__all__ = ["Settings", "default_artifact_dir", "get_settings"]
