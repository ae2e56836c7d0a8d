"""The docs and the shipped code cite nothing a reader cannot open: no notes outside the
repository (the design notes, research files, issue numbers of the project's own tracker,
"§" sections of those), and every short patch or scenario label (R1–R4, P38–P43, X01–X09,
S1–S7) is one docs/bonding.md defines. docs/README.md lists every page and links no page that
is missing. Tests are left out: their docstrings name test cases, not sources for users."""
from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE_DIRS = ("xfrmd", "netlink_codec", "devices", "bonding", "tools", "benchmarks")
CODE_EXT = (".py", ".c", ".h", ".toml", ".sh", ".md", ".txt")

OUTSIDE = [
    (re.compile(r"\bdesign(\.md\b| §)"), "the project's design notes"),
    # a section sign cites a section: of an RFC (public), or of notes outside the repository
    (re.compile(r"(?<!RFC \d{4} )(?<!RFC \d{4}, )§"), "a section of a document outside the "
                                                       "repository"),
    (re.compile(r"\bresearch(/| notes| traces)"), "the research notes"),
    (re.compile(r"\b(lag-offload|xfrm-netlink|clients|peers)\.md\b"), "a research note"),
    # an upstream project's issue is public; a bare "issue N" is the project's own tracker
    (re.compile(r"(?<!libreswan )(?<!strongSwan )(?<!strongswan )(?<!iproute2 )"
                r"\b[Ii]ssue #?\d+"), "an issue of the project's own tracker"),
    (re.compile(r"\bdeliver \d+\b"), "an issue's deliverable"),
    (re.compile(r"/work/"), "a machine path"),
]
LABEL = re.compile(r"\b(R[1-9]|P[3-4]\d|X0\d|S[1-9]|T[23]\d)\b")
GLOSSARY = "## The patches and scenarios this page names"


def _files():
    for name in sorted(os.listdir(os.path.join(ROOT, "docs"))):
        if name.endswith(".md"):
            yield os.path.join("docs", name)
    yield "README.md"
    for top in CODE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d not in ("__pycache__", "build")]
            for f in sorted(filenames):
                if f.endswith(CODE_EXT):
                    yield os.path.relpath(os.path.join(dirpath, f), ROOT)
    for f in ("setup.py", "pyproject.toml", "MANIFEST.in"):
        if os.path.exists(os.path.join(ROOT, f)):
            yield f


def _defined_labels() -> set[str]:
    text = open(os.path.join(ROOT, "docs", "bonding.md")).read()
    start = text.index(GLOSSARY)
    end = text.find("\n## ", start + len(GLOSSARY))
    section = text[start:end]
    labels = set()
    for m in re.finditer(r"\b([RPXS])(\d\d?)(?:–\1?(\d\d?))?\b", section):
        first = int(m.group(2))
        last = int(m.group(3)) if m.group(3) else first
        width = len(m.group(2))
        labels.update(f"{m.group(1)}{n:0{width}d}" for n in range(first, last + 1))
    return labels


def test_nothing_cites_a_document_outside_the_repository():
    found = []
    for rel in _files():
        with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                for pattern, what in OUTSIDE:
                    m = pattern.search(line)
                    if m:
                        found.append(f"{rel}:{n}: {m.group(0)!r} cites {what}: move the fact "
                                     "into docs/ or drop the citation")
    assert not found, "\n".join(found)


def test_every_patch_and_scenario_label_is_defined_in_docs_bonding():
    defined = _defined_labels()
    assert {"R1", "R4", "P38", "P40", "X01", "X05", "X06", "S1", "S7"} <= defined
    found = []
    for rel in _files():
        with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                for m in LABEL.finditer(line):
                    if m.group(0) not in defined:
                        found.append(f"{rel}:{n}: {m.group(0)} is not defined in "
                                     f"docs/bonding.md ({GLOSSARY[3:]})")
    assert not found, "\n".join(found)


def test_docs_readme_lists_every_page_and_only_pages_that_exist():
    text = open(os.path.join(ROOT, "docs", "README.md")).read()
    linked = set(re.findall(r"\]\(([\w.-]+\.md)\)", text))
    pages = {n for n in os.listdir(os.path.join(ROOT, "docs"))
             if n.endswith(".md") and n != "README.md"}
    assert not pages - linked, f"docs/README.md does not list {sorted(pages - linked)}"
    assert not linked - pages, f"docs/README.md links missing pages {sorted(linked - pages)}"
