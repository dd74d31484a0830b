"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright's Python
client (no browser download), with a fresh profile and no background networking (the network
is closed here: Chromium's own update and sync calls would only add refused connections)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",  # the CI image runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1920, "height": 1080}
# Set to a folder (e.g. docs/images) to copy the screenshots there for the README.
README_SCREENSHOTS = "README_SCREENSHOTS"


@contextlib.contextmanager
def chromium(folder: Path) -> Iterator[Any]:
    """A Playwright browser context on a fresh profile under ``folder``; skips the test when
    Chromium is not installed (CI installs it: ``.ci/run``)."""
    if not CHROMIUM.exists():
        why = f"no Chromium at {CHROMIUM}: `apt-get install chromium` (CI installs it)"
        if os.environ.get("REQUIRE_CHROMIUM"):  # set by .ci/run: CI must run the test
            pytest.fail(why)
        pytest.skip(why)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(folder / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport=VIEWPORT,
        )
        try:
            yield context
        finally:
            context.close()


def screenshot(page: Any, path: Path, **kwargs: Any) -> Path:
    """Save a screenshot under the test's folder, and copy it for the README when asked."""
    page.screenshot(path=str(path), **kwargs)
    assert path.stat().st_size > 0
    if target := os.environ.get(README_SCREENSHOTS):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    return path
