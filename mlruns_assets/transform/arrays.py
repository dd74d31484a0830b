"""Reading nested pickled dicts: a missing key names its whole path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlruns_assets.runtime.errors import ExtractionError


def dig(obj: Any, path: tuple[str, ...], where: str) -> Any:
    """``obj[a][b]...`` or an ExtractionError naming the missing key path."""
    for i, key in enumerate(path):
        if not isinstance(obj, Mapping) or key not in obj:
            raise ExtractionError(f"{where}: missing key {'.'.join(path[: i + 1])}")
        obj = obj[key]
    return obj
