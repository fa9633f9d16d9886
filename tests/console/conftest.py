"""A real browser for the console: Debian's Chromium driven by Playwright (never a downloaded
browser: `.ci/run` and `make test-data` install the `chromium` package when it is missing).

Every page fails its test on a console error or an uncaught exception, so a CSP violation, a
bad import or a broken chart is a red test, not a quiet blank panel. Screenshots land in
out/screenshots/ as test artefacts.
"""

from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture(scope="session")
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


@pytest.fixture
def page(browser: Browser, page_errors: list[str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(60_000)
    errors = page_errors
    opened.on("console", lambda m: m.type == "error" and errors.append(m.text))
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    context.close()
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def screenshot() -> Iterator:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.evaluate("window.scrollTo(0, 0)")  # the sticky header belongs at the top
        page.screenshot(path=str(path), full_page=full_page)
        return path

    yield take
