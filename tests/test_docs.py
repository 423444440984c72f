"""The documentation: README's and the docs pages' relative links resolve (files and #anchors), README stays short,
every page is in the site's nav, and nothing points at the old design file (the spec is docs/method.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    links = [a or b for a, b in LINK.findall(text)]
    return [link for link in links if not re.match(r"^[a-z][a-z0-9+.-]*:", link)]


def test_github_slug():
    assert github_slug("Evaluation: pass@k, maj@k, sasc@k and avg@n") == "evaluation-passk-majk-sasck-and-avgn"
    assert github_slug("Vote on N, train on M") == "vote-on-n-train-on-m"
    assert github_slug("`sasc-ttrl prm`: step labels") == "sasc-ttrl-prm-step-labels"


@pytest.mark.parametrize("path", [REPO / "README.md", REPO / "CONTRIBUTING.md", *PAGES], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    broken = []
    for link in relative_links(path):
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(link)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(link)
    assert not broken, f"{path.relative_to(REPO)}: broken links {broken}"


def test_readme_is_short():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 220


def test_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [p.relative_to(REPO).as_posix() for p in PAGES if f"({p.relative_to(REPO).as_posix()})" not in readme]
    assert not missing, missing


def test_every_docs_page_is_in_the_nav():
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", nav, re.M))
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert pages == listed, (pages - listed, listed - pages)


def test_nothing_points_at_design_md():
    old_spec = "DESIGN" + ".md"  # spelled in two pieces, so that this file does not match its own grep
    proc = subprocess.run(["grep", "-rl", old_spec, "sasc_ttrl", "tests"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and not proc.stdout, proc.stdout
