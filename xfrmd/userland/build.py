"""Building a userland with mmdebstrap, all or nothing.

The root filesystem is made in a hidden directory beside its final place and renamed into
place only when mmdebstrap succeeded, so the cache holds either the old userland or the new
one, never half of one. A failed or interrupted build (Ctrl-C, SIGTERM, SIGHUP) removes its
directory; one killed outright (SIGKILL, power loss) is swept away by the next build. Builds of
the same cache are serialised with a lock on the cache directory itself (no lock file)."""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from . import (STAMP, Userland, UserlandError, cache_dir, is_current, nonroot, sources,
               tool_versions)

# Documentation, manual pages and translations are a third of a root filesystem and nothing
# here reads them; copyright files stay (the packages' licences ask for them).
DPKG_FILTERS = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*",
                "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright")


def mmdebstrap_argv(ul: Userland, mirror: str, target: str,
                    mode: str | None = None) -> list[str]:
    # essential + the listed packages: no apt inside (nobody installs into a userland; it is
    # rebuilt from its list), no Recommends (tshark would pull in half a desktop).
    argv = ["mmdebstrap", "--variant=essential", "--include=" + ",".join(ul.packages),
            "--aptopt=APT::Install-Recommends \"false\""]
    if mode:
        argv.append(f"--mode={mode}")
    argv += ["--dpkgopt=" + f for f in DPKG_FILTERS]
    return argv + [ul.suite, target, mirror]


def _building_prefix(name: str) -> str:
    return f".{name}.build-"


class _Interrupted(BaseException):
    pass


def _raise_interrupted(signum, frame):
    raise _Interrupted(signum)


@contextlib.contextmanager
def _locked(directory: str):
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path`` (an interrupted mmdebstrap may leave /proc or /dev
    mounted in its target: removing the tree through them would reach the host's)."""
    prefix = path.rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path or mp.startswith(prefix):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def remove_tree(path: str) -> None:
    """Remove a (partial) root filesystem, unmounting first; as non-root the files belong to
    mmdebstrap's subordinate ids, so the removal runs in its user namespace."""
    if not os.path.lexists(path):
        return
    for mp in _mounts_under(path):
        subprocess.run(["umount", "--lazy", mp], capture_output=True)
    if _mounts_under(path):
        raise UserlandError(f"xfrmd userland: {path} still has file systems mounted in it; "
                            "not removing it")
    if os.geteuid() != 0 and shutil.which("mmdebstrap"):
        subprocess.run(["mmdebstrap", "--unshare-helper", "rm", "-rf", path],
                       capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        raise UserlandError(f"xfrmd userland: could not remove {path}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(directory: str, name: str) -> None:
    """Remove what builds of ``name`` killed outright left behind."""
    for entry in os.listdir(directory):
        if entry.startswith(_building_prefix(name)) or entry.startswith(f".{name}.old-"):
            pid = entry.rsplit("-", 1)[-1]
            if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
                remove_tree(os.path.join(directory, entry))


_PACKAGE_ERRORS = (
    re.compile(r"Unable to locate package (\S+)"),
    re.compile(r"Package '?([^' ]+)'? has no installation candidate"),
    re.compile(r"Couldn't find any package by (?:glob|regex) '([^']+)'"),
    re.compile(r"Failed to fetch \S+/pool/\S+/([^/_\s]+)_\S+\.deb"),
    re.compile(r"^\s*(\S+) : Depends: ", re.M),
    re.compile(r"dpkg: error processing package (\S+?)(?::\w+)? "),
)


def failure_line(ul: Userland, mirror: str, lines: list[str], rc: int) -> str:
    """One line: the suite, the package (or the mirror) and what went wrong."""
    head = f"xfrmd userland: building {ul.name} failed: suite {ul.suite}"
    text = "\n".join(lines)
    for rx in _PACKAGE_ERRORS:
        m = rx.search(text)
        if m:
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.end())
            why = re.sub(r"^[EW]: ", "", text[start:end if end >= 0 else None].strip())
            return f"{head}, package {m.group(1)}: {why}"
    for l in lines:
        if any(m in l for m in ("Failed to fetch", "Could not resolve", "Could not connect",
                                "does not have a Release file", "Connection failed")):
            why = re.sub(r"^[EW]: ", "", l.strip())
            return f"{head}, mirror {mirror} unreachable: {why}"
    errors = [re.sub(r"^E: ", "", l.strip()) for l in lines if l.startswith("E: ")
              and "mmdebstrap failed to run" not in l]
    why = errors[0] if errors else f"mmdebstrap exited with status {rc}"
    return f"{head}, packages {' '.join(ul.packages)}: {why[:300]}"


def _progress(name: str, started: float, out) -> callable:
    tty = getattr(out, "isatty", lambda: False)()

    def show(msg: str) -> None:
        line = f"xfrmd userland: {name}: [{time.monotonic() - started:5.1f}s] {msg}"
        out.write(("\r\033[K" + line) if tty else line + "\n")
        out.flush()
    return show


def run_mmdebstrap(ul: Userland, mirror: str, target: str, out,
                   mode: str | None = None) -> None:
    started = time.monotonic()
    show = _progress(ul.name, started, out)
    show(f"mmdebstrap {ul.suite} from {mirror}"
         + (f" ({mode} mode)" if mode else "") + f": {' '.join(ul.packages)}")
    proc = subprocess.Popen(mmdebstrap_argv(ul, mirror, target, mode), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", env=dict(os.environ, LC_ALL="C.UTF-8"))
    lines: list[str] = []
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith("I: ") and "received signal" not in line:
                show(line[3:])
        rc = proc.wait()
    except BaseException:
        # mmdebstrap got the same signal (same process group): let it clean up its mounts
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if getattr(out, "isatty", lambda: False)():
        out.write("\n")
    if rc:
        raise UserlandError(failure_line(ul, mirror, lines, rc))


def _du(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


def build(ul: Userland, *, mirror: str | None = None, force: bool = False, out=None) -> str:
    """Build ``ul`` unless the cache already has it from the same package list; its root."""
    out = out or sys.stderr
    if not force and is_current(ul):
        return ul.path
    if not shutil.which("mmdebstrap"):
        raise UserlandError("xfrmd userland: mmdebstrap is needed to build a userland "
                            "(Debian: apt-get install mmdebstrap)")
    mode = None
    if os.geteuid() != 0:           # root mode needs root; a user gets the unshare mode
        missing = nonroot.unshare_mode_missing()
        if missing:
            raise UserlandError(nonroot.refusal(ul.name, os.geteuid(), missing))
        mode = "unshare"
    try:
        mirror = (mirror or os.environ.get("XFRMD_DEBIAN_MIRROR")
                  or sources.debian_mirror()).rstrip("/")
    except sources.NoMirror as e:
        raise UserlandError(f"xfrmd userland: {e}") from None
    directory = cache_dir()
    os.makedirs(directory, exist_ok=True)
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM,
                                                                      signal.SIGHUP)}
    try:
        with _locked(directory):
            if not force and is_current(ul):       # another process built it meanwhile
                return ul.path
            sweep(directory, ul.name)
            tmp = os.path.join(directory, f"{_building_prefix(ul.name)}{os.getpid()}")
            try:
                started = time.monotonic()
                run_mmdebstrap(ul, mirror, tmp, out, mode)
                info = {"name": ul.name, "suite": ul.suite, "packages": list(ul.packages),
                        "key": ul.key, "mirror": mirror,
                        "built": datetime.datetime.now(datetime.timezone.utc)
                        .strftime("%Y-%m-%d %H:%M UTC"),
                        "seconds": round(time.monotonic() - started, 1),
                        "bytes": _du(tmp), "versions": tool_versions(tmp)}
                _write_stamp(tmp, json.dumps(info, indent=1))
                _swap_into_place(tmp, ul.path)
            except BaseException:
                remove_tree(tmp)
                raise
    except _Interrupted as e:
        raise UserlandError(f"xfrmd userland: building {ul.name} interrupted by signal "
                            f"{e.args[0]}; nothing was kept") from None
    except KeyboardInterrupt:
        raise UserlandError(f"xfrmd userland: building {ul.name} interrupted; nothing was "
                            "kept") from None
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
    return ul.path


def _write_stamp(root: str, text: str) -> None:
    """The build's record, inside the root. A root made in unshare mode belongs to the user
    namespace's root (the first subordinate uid), so a non-root user writes it through
    mmdebstrap's --unshare-helper, as that root."""
    path = os.path.join(root, STAMP)
    if os.access(root, os.W_OK):
        with open(path, "w") as f:
            f.write(text)
        return
    p = subprocess.run(["mmdebstrap", "--unshare-helper", "sh", "-c", 'cat > "$0"', path],
                       input=text, capture_output=True, text=True)
    if p.returncode:
        raise UserlandError(f"xfrmd userland: could not write {path} as the user namespace's "
                            f"root: {(p.stderr.strip().splitlines() or ['?'])[-1]}")


def _swap_into_place(tmp: str, final: str) -> None:
    """rename(2) the new root into place; an old one is moved aside first and removed after
    (a directory cannot be renamed over a non-empty one)."""
    old = None
    if os.path.lexists(final):
        old = os.path.join(os.path.dirname(final),
                           f".{os.path.basename(final)}.old-{os.getpid()}")
        os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        if old:
            os.rename(old, final)
        raise
    if old:
        remove_tree(old)
