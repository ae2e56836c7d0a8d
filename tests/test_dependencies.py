"""Every dependency pyproject.toml declares is used: a [project] dependency is imported by
the shipped code, a test extra by the tests (or is a pytest plugin the configuration turns
on, or a tool a test runs)."""
from __future__ import annotations

import os
import re
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORT_NAME = {"pillow": "PIL", "pytest-trio": None, "pytest-timeout": None}
# plugins and tools used without an import, and what shows they are used
USED_OTHERWISE = {"pytest-trio": ("pyproject.toml", "trio_mode = true"),
                  "pytest-timeout": ("pyproject.toml", "timeout = 300"),
                  "mypy": ("tests/test_typing.py", '"-m", "mypy"')}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0]


def _sources(*tops: str) -> str:
    out = []
    for top in tops:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            out += [open(os.path.join(dirpath, f)).read() for f in files if f.endswith(".py")]
    return "\n".join(out)


def _imported(module: str, text: str) -> bool:
    return re.search(rf"^\s*(import|from)\s+{re.escape(module)}\b", text, re.M) is not None


def test_every_declared_dependency_is_used():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    code = _sources("xfrmd", "netlink_codec", "devices", "bonding")
    tests = _sources("tests")
    unused = []
    for req in project["dependencies"]:
        name = _name(req)
        if not _imported(IMPORT_NAME.get(name) or name.replace("-", "_"), code):
            unused.append(name)
    for req in project["optional-dependencies"]["test"]:
        name = _name(req)
        if name in USED_OTHERWISE:
            path, needle = USED_OTHERWISE[name]
            if needle not in open(os.path.join(ROOT, path)).read():
                unused.append(name)
        elif not _imported(IMPORT_NAME.get(name) or name.replace("-", "_"), tests + code):
            unused.append(name)
    assert not unused, f"declared but not used: {unused}"
