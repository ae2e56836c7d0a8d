"""The structure docs/architecture.md describes, checked against the code's imports:

* no import circle spans two folders (a subsystem never imports what sits above it);
* inside a folder, a circle is allowed only where it mirrors a pair of kernel files that
  call each other, and docs/architecture.md names each such circle;
* no import inside a function, except of an optional dependency or for start-up time (the
  import line, or the comment line above it, says ``# optional dependency: WHY`` or
  ``# start-up time: WHY``) — an import hidden in a function hides a layering knot.

Imports under ``if TYPE_CHECKING:`` are for type names only and are not counted."""
from __future__ import annotations

import ast
import os
import re
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("xfrmd", "netlink_codec", "devices", "bonding")
ARCH = os.path.join(ROOT, "docs", "architecture.md")
OPTIONAL = re.compile(r"#\s*(optional dependency|start-up time)\b")


def _modules() -> dict[str, str]:
    mods = {}
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, pkg)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in filenames:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    if name.endswith(".__init__"):
                        name = name[:-len(".__init__")]
                    mods[name] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """(node, inside_function) for every runtime import."""
    def walk(node, in_fn):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), in_fn)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_fn
            yield from walk(child, in_fn or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    yield from walk(tree, False)


def _targets(mods, cur: str, node) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = cur.split(".")
        if node.level:
            keep = len(base) - node.level + (1 if mods[cur].endswith("__init__.py") else 0)
            base = base[:keep]
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
        # `from PKG import sub`: the submodules only (the package's own code is not used)
        names = subs if len(subs) == len(node.names) else [mod] + subs
    out = []
    for n in names:
        while n and n not in mods and "." in n:
            n = n.rsplit(".", 1)[0]
        if n in mods and n != cur:
            out.append(n)
    return out


def _marked(lines: list[str], i: int) -> bool:
    """The import on line ``i`` (0-based), or the lines above it in its function (up to its
    ``def``), say why it is there."""
    for j in range(i, max(-1, i - 12), -1):
        if OPTIONAL.search(lines[j]):
            return True
        if lines[j].lstrip().startswith(("def ", "async def ")):
            return False
    return False


def _graph():
    mods = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    inner = []
    for name, path in mods.items():
        src = open(path).read()
        lines = src.splitlines()
        for node, in_fn in _imports(ast.parse(src)):
            if in_fn and not _marked(lines, node.lineno - 1):
                inner.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
            edges[name].update(_targets(mods, name, node))
    return mods, edges, inner


def _circles(mods, edges) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(mods):
        if v not in index:
            visit(v)
    return out


def _folder(mods, name: str) -> str:
    return os.path.dirname(os.path.relpath(mods[name], ROOT))


def test_no_import_circle_spans_two_folders():
    mods, edges, _ = _graph()
    wide = [c for c in _circles(mods, edges) if len({_folder(mods, m) for m in c}) > 1]
    assert not wide, "import circles across folders:\n" + "\n".join(" ↔ ".join(c) for c in wide)


def test_every_circle_inside_a_folder_is_named_in_the_architecture_doc():
    mods, edges, _ = _graph()
    doc = open(ARCH).read()
    unnamed = [c for c in _circles(mods, edges)
               if not all(os.path.relpath(mods[m], ROOT) in doc for m in c)]
    assert not unnamed, ("circles docs/architecture.md does not name:\n"
                         + "\n".join(" ↔ ".join(c) for c in unnamed))


def test_no_import_inside_a_function():
    _, _, inner = _graph()
    assert not inner, ("imports inside functions (move them up, or mark an optional "
                       "dependency):\n" + "\n".join(inner))
