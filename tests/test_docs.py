"""The documentation holds together: relative links resolve, the generated pages are current
(docs/configuration.md from Settings), and the README stays a front door."""

import re
from pathlib import Path

import pytest

from tools import settings_doc

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to
    hyphens, repeats numbered (code blocks' comment lines are not headings)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        text = re.sub(r"[`*]|\[([^]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path):
    """Every relative link's file exists and, when it names a heading, so does the heading."""
    links = [
        (target, anchor)
        for target, anchor in LINK.findall(page.read_text())
        if "://" not in target and not target.startswith("mailto:")
    ]
    missing = [t for t, _ in links if t and not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing {missing}"
    broken = [
        f"{t}#{a}"
        for t, a in links
        if a and (not t or t.endswith(".md")) and a not in anchors(page.parent / t if t else page)
    ]
    assert not broken, f"{page.name} links to headings that do not exist: {broken}"


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
