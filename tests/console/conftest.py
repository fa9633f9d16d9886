"""A real browser for the console: Debian's Chromium driven by Playwright (never a downloaded
browser: `.ci/run` and `make test-data` install the `chromium` package when it is missing).

Every page fails its test on a console error or an uncaught exception, so a CSP violation, a
bad import or a broken chart is a red test, not a quiet blank panel. Screenshots land in
out/screenshots/ as test artefacts.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"


# Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it
# is open, which would break later tests that call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium: install Debian's chromium (`make test-data` does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page_errors() -> list[str]:
    """What the page logged as errors; a test that provokes one (a 401) removes it."""
    return []


LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def leaves_the_machine(url: str) -> bool:
    """A request the console must never make air-gapped: to anywhere but the gateway's host
    (a CDN, web fonts, analytics). ``data:`` and ``blob:`` URLs stay in the page."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in {
        h.strip("[]") for h in LOCAL_HOSTS
    }


@pytest.fixture
def open_page(browser: Browser, page_errors: list[str]) -> Iterator[Callable[..., Page]]:
    """Open pages in fresh contexts (a viewport each); their errors, and any request that would
    leave the machine, fail the test."""
    contexts = []
    outside: list[str] = []

    def open_one(width: int = 1360, height: int = 1000, scale: float = 1) -> Page:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            device_scale_factor=scale,
            accept_downloads=True,
        )
        contexts.append(context)
        opened = context.new_page()
        opened.set_default_timeout(60_000)
        opened.on("console", lambda m: m.type == "error" and page_errors.append(m.text))
        opened.on("pageerror", lambda e: page_errors.append(str(e)))
        opened.on("request", lambda r: leaves_the_machine(r.url) and outside.append(r.url))
        return opened

    yield open_one
    for context in contexts:
        context.close()
    assert not page_errors, f"the page logged errors: {page_errors}"
    assert not outside, f"the console made requests off the machine: {outside}"


@pytest.fixture
def page(open_page: Callable[..., Page]) -> Page:
    return open_page()


@pytest.fixture
def screenshot() -> Iterator:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.evaluate("window.scrollTo(0, 0)")  # the sticky header belongs at the top
        page.screenshot(path=str(path), full_page=full_page)
        return path

    yield take
