"""The documentation: docs/cli.md is what the parser gives, and every relative link and picture resolves."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*\b(?:src|href)=["']([^"']+)["']""", re.I)
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def _cli_docs():
    spec = importlib.util.spec_from_file_location("cli_docs", ROOT / "scripts" / "cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans, whose brackets are no links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    heading = re.sub(r"[`*_]", lambda m: "_" if m.group() == "_" else "", heading)
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    slugs: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        slug, n = _slug(heading), 1
        while slug in slugs:  # repeated headings get -1, -2, ...
            slug, n = f"{_slug(heading)}-{n}", n + 1
        slugs.add(slug)
    return slugs


def _links(path: Path) -> list[str]:
    text = _prose(path.read_text())
    return _LINK.findall(text) + _HTML_SRC.findall(text)


def test_cli_reference_is_up_to_date():
    expected = _cli_docs().render()
    written = (ROOT / "docs" / "cli.md").read_text() if (ROOT / "docs" / "cli.md").exists() else ""
    assert written == expected, ("docs/cli.md is not what the command-line parser gives: "
                                 "run `python scripts/cli_docs.py` and commit docs/cli.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_pictures_resolve(doc):
    broken = []
    for target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.exists():
            broken.append(f"{target} (no file "
                          f"{resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading with anchor #{anchor})")
    assert not broken, f"{doc.relative_to(ROOT)} links to what does not exist: " + "; ".join(broken)


def test_slugs_follow_github():
    assert _slug("Runs, checkpoints and resuming") == "runs-checkpoints-and-resuming"
    assert _slug("introvae check-data") == "introvae-check-data"
    assert _slug("The `score` command") == "the-score-command"
    assert _slug("Speed and precision (bf16)") == "speed-and-precision-bf16"
