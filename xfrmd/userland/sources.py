"""The Debian mirror this machine's apt already uses, read from its sources.

A userland is built from the mirror the administrator chose (a local mirror, a proxy, a
snapshot), so nothing about mirrors is written into xfrmd. Both formats apt reads are
understood: one-line ``sources.list`` entries and deb822 ``*.sources`` paragraphs
(sources.list(5)). Disabled files (other suffixes) and ``Enabled: no`` entries are skipped,
as apt skips them."""
from __future__ import annotations

import glob
import os

APT_DIR = "/etc/apt"

# Codenames and aliases of the Debian archive itself: an entry naming one of these serves
# Debian (a third-party repository names its own suites, the security archive "X-security").
DEBIAN_SUITES = frozenset({
    "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
    "oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental"})


class NoMirror(RuntimeError):
    pass


def _one_line_entries(text: str):
    """``deb [opt=val …] URI SUITE [COMPONENT…]`` lines → (uri, suites)."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            yield words[0], [words[1]]


def _deb822_entries(text: str):
    """deb822 paragraphs (blank-line separated, continuation lines start with a space)."""
    paragraphs, fields, key = [], {}, None
    for raw in text.splitlines() + [""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                paragraphs.append(fields)
            fields, key = {}, None
        elif raw[0] in " \t" and key:
            fields[key] += " " + raw.strip()
        elif ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    for p in paragraphs:
        if "deb" not in p.get("types", "").split():
            continue
        if p.get("enabled", "yes").lower() in ("no", "false", "0"):
            continue
        for uri in p.get("uris", "").split():
            yield uri, p.get("suites", "").split()


def apt_entries(apt_dir: str = APT_DIR) -> list[tuple[str, list[str]]]:
    """Every enabled ``deb`` entry, in the order apt reads the files."""
    out = []
    main = os.path.join(apt_dir, "sources.list")
    if os.path.exists(main):
        out += _one_line_entries(open(main).read())
    parts = sorted(glob.glob(os.path.join(apt_dir, "sources.list.d", "*.list"))
                   + glob.glob(os.path.join(apt_dir, "sources.list.d", "*.sources")))
    for path in parts:
        text = open(path).read()
        out += _deb822_entries(text) if path.endswith(".sources") else _one_line_entries(text)
    return out


def debian_mirror(apt_dir: str = APT_DIR) -> str:
    """The URI of the first entry that serves a Debian suite; NoMirror when there is none."""
    for uri, suites in apt_entries(apt_dir):
        if any(s.rstrip("/") in DEBIAN_SUITES for s in suites):
            return uri.rstrip("/")
    raise NoMirror(f"no Debian mirror in the apt sources ({apt_dir}/sources.list, "
                   f"{apt_dir}/sources.list.d/*.list|*.sources): name one with --mirror URL "
                   "or XFRMD_DEBIAN_MIRROR")
