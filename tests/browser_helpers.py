"""Headless Debian Chromium for the browser tests (the HTML report, the dashboard): one launch,
one set of listeners.

CI installs ``/usr/bin/chromium`` (``.ci/run``); Playwright drives it without a browser download
of its own (never ``playwright install``). A test module puts :data:`BROWSER_MARKS` in its
``pytestmark`` and opens a page with :func:`chromium_page`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: URLs a page may always load (inline data, blobs, the blank page)
LOCAL_SCHEMES = ("data:", "blob:", "about:")

BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium; CI does)",
    ),
]


@dataclass
class BrowserPage:
    """A Playwright page and what went wrong on it: console errors and warnings, page errors,
    failed requests and HTTP errors (``problems``), and requests to anywhere not allowed, which
    were aborted (``outside``)."""

    page: Any
    problems: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


@contextmanager
def chromium_page(
    allow: tuple[str, ...], width: int = 1400, height: int = 900
) -> Iterator[BrowserPage]:
    """A page of headless Chromium that may load only URLs starting with ``allow`` (and
    :data:`LOCAL_SCHEMES`); every other request is aborted and listed in ``outside``."""
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs the playwright package (pip install -e '.[dev]')"
    )
    allowed = (*allow, *LOCAL_SCHEMES)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            seen = BrowserPage(page)
            page.on(
                "console",
                lambda msg: (
                    seen.problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
            page.on(
                "requestfailed",
                lambda req: seen.problems.append(
                    f"failed: {req.url} ({req.failure}) from {page.url}"
                ),
            )
            page.on(
                "response",
                lambda res: (
                    seen.problems.append(f"HTTP {res.status}: {res.url}")
                    if res.status >= 400
                    else None
                ),
            )

            def only_allowed(route: Any) -> None:
                if route.request.url.startswith(allowed):
                    route.continue_()
                else:
                    seen.outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_allowed)
            yield seen
        finally:
            browser.close()


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file (and a check that it is one)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    return width, height
