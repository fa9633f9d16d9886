"""The documentation holds together: relative links resolve, the generated pages are current
(docs/configuration.md from Settings), and the README stays a front door."""

import re
from pathlib import Path

import pytest

from tools import settings_doc

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    links = [
        t for t in LINK.findall(page.read_text()) if "://" not in t and not t.startswith("mailto:")
    ]
    missing = [t for t in links if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing {missing}"


def test_configuration_page_is_generated_from_settings():
    assert (ROOT / "docs" / "configuration.md").read_text() == settings_doc.render(), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_readme_is_a_front_door():
    """The README is what a newcomer reads first: the two commands on its first screen, the rest
    in docs/ (at most 200 lines, so it stays a front door and not a manual)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    first_screen = "\n".join(lines[:15])
    assert "make up" in first_screen and "make test" in first_screen
    assert len(lines) <= 200, f"README.md is {len(lines)} lines; move detail to docs/"
