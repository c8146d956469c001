"""Every relative link in the README, docs/**/*.md and research/README.md points to a file of the checkout, and a
``#fragment`` on a markdown target names one of its headings (GitHub's heading anchors)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted({ROOT / "README.md", ROOT / "research" / "README.md", *(ROOT / "docs").rglob("*.md")})
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def links(text: str) -> list[str]:
    """The link and image targets of a markdown text, outside fenced blocks and inline code."""
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    return LINK.findall(text)


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, characters other than letters, digits, spaces, '-' and
    '_' dropped, spaces to '-', a repeated anchor suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken(page: Path) -> list[str]:
    bad = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, ...
            continue
        path, _, fragment = target.partition("#")
        dest = page if not path else (page.parent / path).resolve()
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest.read_text()):
            bad.append(f"{target}: no heading with anchor #{fragment}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    assert broken(page) == []


def test_the_checker_finds_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# Title\n\n## Faults — injected (and survived)\n## Twice\n## Twice\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md) [anchor](b.md#faults--injected-and-survived) [dup](b.md#twice-1) [self](#top)\n"
                    "![img](missing.png) [gone](c.md) [bad anchor](b.md#nope) [web](https://example.org/x.md)\n"
                    "`[code](nowhere.md)`\n```\n[fenced](nowhere.md)\n```\n# Top\n")
    assert broken(page) == ["missing.png: no such file", "c.md: no such file", "b.md#nope: no heading with anchor #nope"]
