"""The documentation holds together: relative links resolve, and the generated pages are
current (docs/configuration.md from Settings)."""

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
