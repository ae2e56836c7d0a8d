"""Extended attributes of the emulated /proc and /sys files: `ls -l` asks
lgetxattr(security.selinux) and getxattr(system.posix_acl_access) of each file, which the
host would answer ENOENT for an emulated device's file. The shim answers as procfs (no xattr
handlers: EOPNOTSUPP) and sysfs (kernfs: ENODATA for security./trusted./user., EOPNOTSUPP
for ACLs) do on this host; the host's own `lo` files are the oracle."""
from __future__ import annotations

import os
import shutil
import subprocess

from .conftest import require, require_shim, xfrmd_run

# (a file of the emulated eth2, the same file of the host's lo)
FILES = [("/proc/sys/net/ipv4/conf/eth2/forwarding", "/proc/sys/net/ipv4/conf/lo/forwarding"),
         ("/proc/sys/net/ipv6/conf/eth2/forwarding", "/proc/sys/net/ipv6/conf/lo/forwarding"),
         ("/proc/sys/net/ipv4/conf/eth2/rp_filter", "/proc/sys/net/ipv4/conf/lo/rp_filter"),
         ("/sys/class/net/eth2/address", "/sys/class/net/lo/address"),
         ("/sys/class/net/eth2/ifindex", "/sys/class/net/lo/ifindex"),
         ("/sys/class/net/eth2/ifalias", "/sys/class/net/lo/ifalias"),
         ("/proc/net/dev", "/proc/net/dev")]
NAMES = ("security.selinux", "system.posix_acl_access", "user.x")


def _xattrs(path: str) -> list:
    out: list = [os.listxattr(path)]
    for n in NAMES:
        try:
            out.append(os.getxattr(path, n, follow_symlinks=False))
        except OSError as e:
            out.append(e.errno)
    return out


def test_ls_l_prints_emulated_files_with_the_mode_linux_shows():
    require_shim("ls")
    require(os.path.exists("/sys/class/net/lo/ifalias"), "needs the host's sysfs")
    p = xfrmd_run("ls -l " + " ".join(f for f, _ in FILES), "default")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    host = subprocess.run(["ls", "-l"] + [h for _, h in FILES], capture_output=True,
                          text=True, check=True).stdout
    mode = {line.split()[-1]: line.split()[0] for line in host.splitlines()}
    got = {line.split()[-1]: line.split()[0] for line in p.stdout.splitlines()}
    assert [got[f] for f, _ in FILES] == [mode[h] for _, h in FILES]
    assert got["/proc/sys/net/ipv4/conf/eth2/forwarding"] == "-rw-r--r--"


PROBE = """import os
out = []
for f in %r:
    r = [os.listxattr(f)]
    for n in %r:
        try:
            r.append(os.getxattr(f, n, follow_symlinks=False))
        except OSError as e:
            r.append(e.errno)
    out.append(r)
print(repr(out))
"""


def test_getxattr_and_listxattr_answer_as_procfs_and_sysfs(tmp_path):
    require_shim()
    require(shutil.which("python3") is not None, "needs python3")
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE % ([f for f, _ in FILES], NAMES))
    p = xfrmd_run(f"python3 {probe}", "default")
    assert p.returncode == 0, p.stderr
    import ast
    assert ast.literal_eval(p.stdout.strip()) == [_xattrs(h) for _, h in FILES]
    q = xfrmd_run("python3 -c \"import os; os.getxattr('/sys/class/net/nope0/mtu', 'user.x')\"",
                  "default")
    assert "FileNotFoundError" in q.stderr
