"""Debian source packages as the suites' origin: a package's upstream tarball
(``*.orig.tar.*``) found through a suite's ``Sources`` index on the mirror the machine's apt
sources name (never a host written here), downloaded and unpacked once into
``<cache>/xfrmd/<suite name>/<version>/``."""
from __future__ import annotations

import lzma
import os
import re
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass

from ..userland.sources import debian_mirror


def cache_root(name: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xfrmd", name)


@dataclass(frozen=True)
class OrigTarball:
    package: str
    version: str          # the Debian version, e.g. 0.8.1-9
    upstream: str         # the upstream version, e.g. 0.8.1
    path: str             # below the mirror: pool/main/p/pyroute2/pyroute2_0.8.1.orig.tar.xz


def sources_index(mirror: str, suite: str) -> str:
    url = f"{mirror}/dists/{suite}/main/source/Sources.xz"
    with urllib.request.urlopen(url, timeout=60) as r:
        return lzma.decompress(r.read()).decode()


def orig_tarballs(text: str, package: str) -> list[OrigTarball]:
    """Every stanza of ``package`` in a Sources index, with its upstream tarball."""
    out = []
    for stanza in text.split("\n\n"):
        if not re.search(rf"^Package: {re.escape(package)}$", stanza, re.M):
            continue
        version = re.search(r"^Version: (\S+)$", stanza, re.M)
        directory = re.search(r"^Directory: (\S+)$", stanza, re.M)
        orig = re.search(rf"^ \S+ \d+ ({re.escape(package)}_(\S+)\.orig\.tar\.\w+)$",
                         stanza, re.M)
        if version and directory and orig:
            out.append(OrigTarball(package, version.group(1), orig.group(2),
                                   f"{directory.group(1)}/{orig.group(1)}"))
    return out


def find(package: str, suites: list[str], upstream: str | None = None
         ) -> tuple[str, OrigTarball]:
    """(mirror, tarball) of ``package`` from the first of ``suites`` that has it (with the
    upstream version ``upstream`` when given)."""
    mirror = debian_mirror()
    for suite in suites:
        try:
            text = sources_index(mirror, suite)
        except OSError:
            continue
        for t in orig_tarballs(text, package):
            if upstream is None or t.upstream == upstream:
                return mirror, t
    want = f"{package} {upstream}" if upstream else package
    raise RuntimeError(f"{want} is in none of the Sources indexes of {', '.join(suites)} "
                       "on the apt mirror")


def unpack(mirror: str, tarball: OrigTarball, dest: str, members: list[str]) -> str:
    """Download the tarball and unpack ``members`` (paths below its top folder) into
    ``dest/<top folder>``; returns that folder."""
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        local = os.path.join(tmp, os.path.basename(tarball.path))
        urllib.request.urlretrieve(f"{mirror}/{tarball.path}", local)
        names = subprocess.run(["tar", "-tf", local], check=True, capture_output=True,
                               text=True).stdout.split("\n", 1)[0]
        top = names.split("/", 1)[0]
        out = os.path.join(tmp, "x")
        os.makedirs(out)
        subprocess.run(["tar", "-xf", local, "-C", out] + [f"{top}/{m}" for m in members],
                       check=True, capture_output=True)
        final = os.path.join(dest, top)
        os.rename(os.path.join(out, top), final)
    return final
