"""Small helpers shared by the bridge's patch modules (`bridge`, `ema`)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from . import plugins

__all__ = ["DATASET_MODULE", "cfg_get", "ensure_console", "first_rank", "is_plugin_type",
           "logger"]

logger = logging.getLogger("bsmamba2_plugin")
DATASET_MODULE = f"{__package__}.dataset"


def is_plugin_type(model_type: str | None) -> bool:
    return bool(model_type) and model_type in plugins.available()


def cfg_get(section: Any, key: str, default: Any = None) -> Any:
    try:
        return section[key] if key in section else default
    except TypeError:
        return getattr(section, key, default)


def first_rank() -> bool:
    """True outside DDP and on rank 0 (msst prints only there)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def ensure_console() -> None:
    """msst logs with print() and configures no logging; when nothing handles the
    plugin's log records, send its INFO lines to stdout so they land in msst's log."""
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
