"""``xfrmd suites fetch`` without the network: a mirror on disk (a ``file:`` URL) with a
suite's binary-all index and a linux-source .deb built here; only the members a source names
are unpacked, from the newest ``linux-source-X.Y`` of the suite, into the cache."""
from __future__ import annotations

import lzma
import os
import subprocess
import tarfile

import pytest

from xfrmd.suites import kselftest

SELFTESTS = "tools/testing/selftests"


def _deb(tmp, package: str, files: dict[str, str]) -> str:
    """A linux-source .deb: /usr/src/PACKAGE.tar.xz holding PACKAGE/<path> for each file."""
    tree = tmp / f"tree-{package}"
    for path, text in files.items():
        f = tree / package / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    pkg = tmp / f"pkg-{package}"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: t\n")
    (pkg / "usr" / "src").mkdir(parents=True)
    with tarfile.open(pkg / "usr" / "src" / f"{package}.tar.xz", "w:xz") as t:
        t.add(tree / package, arcname=package)
    out = tmp / "mirror" / "pool" / f"{package}_all.deb"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(pkg), str(out)],
                   check=True, capture_output=True)
    return f"pool/{package}_all.deb"


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    if subprocess.run(["which", "dpkg-deb"], capture_output=True).returncode:
        pytest.skip("no dpkg-deb")
    files = {f"{SELFTESTS}/drivers/net/bonding/bond_ipsec_offload.sh": "new\n",
             f"{SELFTESTS}/drivers/net/bonding/lag_lib.sh": "lag\n",
             f"{SELFTESTS}/net/lib.sh": "lib\n",
             f"{SELFTESTS}/net/lib/sh/defer.sh": "defer\n",
             f"{SELFTESTS}/net/rtnetlink.sh": "not wanted\n",
             "drivers/net/bonding/bond_main.c": "not wanted\n"}
    new = _deb(tmp_path, "linux-source-7.2", files)
    old = _deb(tmp_path, "linux-source-6.19",
               {f"{SELFTESTS}/drivers/net/bonding/bond_ipsec_offload.sh": "old\n"})
    index = "".join(f"Package: {p}\nVersion: {v}\nFilename: {f}\n\n" for p, v, f in (
        ("linux-source-6.19", "6.19.1-1", old), ("linux-source-7.2", "7.2.3-1", new),
        ("linux-source-7.2", "7.2.1-1", old), ("linux-source", "7.2.3-1", old)))
    d = tmp_path / "mirror" / "dists" / "forky" / "main" / "binary-all"
    d.mkdir(parents=True)
    (d / "Packages.xz").write_bytes(lzma.compress(index.encode()))
    monkeypatch.setattr(kselftest, "debian_mirror", lambda: f"file://{tmp_path}/mirror")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_fetch_unpacks_only_the_named_members_of_the_newest_package(mirror):
    said: list[str] = []
    got = kselftest.fetch(progress=said.append, source=kselftest.BONDING)
    assert got == str(mirror / "cache" / "xfrmd" / "kselftest" / "bonding" / "7.2.3-1" /
                      "selftests")
    found = sorted(os.path.relpath(os.path.join(d, f), got)
                   for d, _, fs in os.walk(got) for f in fs)
    assert found == ["drivers/net/bonding/bond_ipsec_offload.sh",
                     "drivers/net/bonding/lag_lib.sh", "net/lib.sh", "net/lib/sh/defer.sh"]
    assert open(os.path.join(got, found[0])).read() == "new\n"
    assert said[0].startswith("kselftest: streaming linux-source-7.2 7.2.3-1 from forky")
    # the second time it is the cache's: nothing is read from the mirror
    (mirror / "mirror" / "pool" / "linux-source-7.2_all.deb").unlink()
    assert kselftest.fetch(progress=said.append, source=kselftest.BONDING) == got
    # the net selftests' cache is a sibling, not this
    assert kselftest.cached() is None


def test_a_suite_without_the_package_says_so(mirror, monkeypatch):
    monkeypatch.setattr(kselftest, "BONDING", kselftest.Source(
        "forky", r"linux-headers-\d+", ("x/",), "bonding"))
    with pytest.raises(RuntimeError, match=r"not in the forky index of the apt mirror"):
        kselftest.fetch(progress=lambda _: None, source=kselftest.BONDING)
