"""The front page and docs/ hold together: every relative link and anchor resolves, every page
is in the index, and the README's first two commands are the ones a newcomer needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # no code comments
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def test_slug_is_githubs():
    assert slug("Security: what the exporter bounds") == "security-what-the-exporter-bounds"
    assert slug("`/probe`") == "probe"
    assert slug("Helm (Kubernetes, kube-prometheus-stack)") == (
        "helm-kubernetes-kube-prometheus-stack")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_and_anchors_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}"


def test_every_docs_page_is_in_the_index():
    index = (ROOT / "docs/README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name


def test_readme_starts_with_the_demo_then_the_test_suite():
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert "unpod-exporter --demo" in blocks[0] and "pip install" in blocks[0]
    assert blocks[1].strip() == "./scripts/test.sh"
    assert (ROOT / ".ci/run").read_text().rstrip().endswith("exec ./scripts/test.sh")
    assert len((ROOT / "README.md").read_text()) < 8000  # a front page, not the manual
