"""What a folder holds, to prove that reading it changed nothing: every path with its mtime, size
and (for files) content digest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

Entry = tuple[int, int, str | None]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_snapshot(root: Path) -> dict[str, Entry]:
    """Relative path -> (mtime in ns, size, sha256 of a file / None for a folder), root included."""
    out: dict[str, Entry] = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(folder) / name
            st = path.stat()
            digest = sha256(path) if path.is_file() else None
            out[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size, digest)
    return out


def changes(
    before: dict[str, Entry], after: dict[str, Entry]
) -> dict[str, tuple[Entry | None, ...]]:
    """The paths that appeared, vanished or changed, with their before and after entries."""
    return {
        path: (before.get(path), after.get(path))
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    }
