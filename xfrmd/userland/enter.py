"""Enter a root filesystem and exec a command there (``xfrmd run --userland``'s last step).

    python3 enter.py --root ROOT --stage DIR [--shim SO] [--bind PATH]… -- CMD ARGS…

Run as a script, not imported: it must start fast and needs nothing but the standard library.
It turns into CMD with execve(2), so the caller's signal forwarding and exit status work as
for any other command.

In a private mount namespace (and, for a non-root user, a user namespace mapping the user to
root, as ``unshare -r`` does):

* ``DIR`` (an empty directory the caller owns and removes) gets a tmpfs, and ROOT is mounted
  there as the lower layer of an overlay whose upper layer is in that tmpfs: the command may
  write anywhere, the cached root filesystem is never changed, and every run starts pristine;
* the host's /proc, /dev, /sys (recursively) and /tmp appear at the same places, /run is a
  fresh tmpfs (so two daemons never share a pid file), each ``--bind`` path (the server's
  socket directory, the current directory) at its own path;
* the shim is copied to /run/xfrmd/ and LD_PRELOAD is pointed at the copy;
* chroot(2) into it, chdir to the current directory, exec CMD.
"""
from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
INSIDE_SHIM_DIR = "/run/xfrmd"
SETUP_FAILED = 125          # as unshare(1) and container runtimes: the command never ran

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(e)}")


def mount(src, target, fstype, flags, data=None) -> None:
    rc = _libc.mount(src.encode() if src else None, target.encode(),
                     fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                     data.encode() if data else None)
    _check(rc, f"mount {src or fstype} on {target}")


def enter_namespaces() -> None:
    uid, gid = os.getuid(), os.getgid()
    if os.geteuid() == 0:
        if _libc.unshare(CLONE_NEWNS) != 0:
            e = ctypes.get_errno()
            raise SetupError("entering a root filesystem needs a private mount namespace "
                             f"(unshare(CLONE_NEWNS): {os.strerror(e)}): CAP_SYS_ADMIN is "
                             "missing (an unprivileged container?)")
    elif _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        e = ctypes.get_errno()
        raise SetupError(
            "entering a root filesystem as a non-root user needs an unprivileged user "
            f"namespace, which this host refuses (unshare(CLONE_NEWUSER): {os.strerror(e)}); "
            "run as root, or allow them (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0, kernel.apparmor_restrict_unprivileged_userns=0)")
    else:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    # nothing done here may reach the host's mount table
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def _overlay_escape(path: str) -> str:
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def make_root(root: str, stage: str) -> str:
    """ROOT under a private writable overlay at STAGE/root; the directory to chroot into."""
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for d in ("upper", "work", "root"):
        os.mkdir(os.path.join(stage, d))
    merged = os.path.join(stage, "root")
    base = (f"lowerdir={_overlay_escape(root)},upperdir={stage}/upper,"
            f"workdir={stage}/work")
    errors = []
    # in a user namespace overlayfs keeps its metadata in user.* xattrs (userxattr)
    for opts in (base, base + ",userxattr"):
        try:
            mount("overlay", merged, "overlay", 0, opts)
            return merged
        except SetupError as e:
            errors.append(str(e))
    raise SetupError(f"an overlay over {root} is not possible here ({errors[-1]})")


def _mkdirs(path: str) -> None:
    os.makedirs(path, exist_ok=True)


def populate(merged: str, binds: list[str], shim: str | None) -> None:
    for d in ("/proc", "/dev", "/sys"):
        _mkdirs(merged + d)
        mount(d, merged + d, None, MS_BIND | MS_REC)
    _mkdirs(merged + "/tmp")
    # not recursive: the host's /tmp may hold this very overlay's stage below it; but in a
    # user namespace mounts below /tmp are locked to it and only a recursive bind is allowed
    try:
        mount("/tmp", merged + "/tmp", None, MS_BIND)
    except SetupError:
        mount("/tmp", merged + "/tmp", None, MS_BIND | MS_REC)
    _mkdirs(merged + "/run")
    mount("tmpfs", merged + "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for d in ("lock", "xfrmd"):
        os.mkdir(merged + "/run/" + d)
    done = ["/tmp"]
    for path in binds:
        path = os.path.realpath(path)
        if path == "/" or any(path == p or path.startswith(p + "/") for p in done):
            continue
        if os.path.isdir(path):
            _mkdirs(merged + path)
        else:
            _mkdirs(os.path.dirname(merged + path))
            open(merged + path, "a").close()
        mount(path, merged + path, None, MS_BIND | MS_REC)
        done.append(path)
    if shim:
        _copy(shim, merged + INSIDE_SHIM_DIR + "/" + os.path.basename(shim))


def _copy(src: str, dst: str) -> None:
    """shutil.copy (contents and mode) without shutil: under -I -S it loads re, fnmatch and
    the compressors first (≈ 8 ms of this process's start, which CMD waits for)."""
    with open(src, "rb") as f, open(dst, "wb") as g:
        g.write(f.read())
    os.chmod(dst, os.stat(src).st_mode & 0o7777)


def inside_env(env: dict, shim: str | None) -> dict:
    env = dict(env)
    if shim and env.get("LD_PRELOAD"):
        inside = INSIDE_SHIM_DIR + "/" + os.path.basename(shim)
        env["LD_PRELOAD"] = " ".join(inside if p == shim else p
                                     for p in env["LD_PRELOAD"].replace(":", " ").split())
    # a host PATH (pyenv shims, ~/bin) means little in there; the standard one comes after
    std = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env["PATH"] = (env["PATH"] + ":" + std) if env.get("PATH") else std
    return env


def parse(argv: list[str]):
    opts = {"--root": None, "--stage": None, "--shim": None}
    binds, i = [], 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--bind":
            binds.append(argv[i + 1])
        elif argv[i] in opts:
            opts[argv[i]] = argv[i + 1]
        else:
            raise SystemExit(f"enter.py: unknown option {argv[i]}")
        i += 2
    cmd = argv[i + 1:]
    if not (opts["--root"] and opts["--stage"] and cmd):
        raise SystemExit("usage: enter.py --root ROOT --stage DIR [--shim SO] [--bind P]… "
                         "-- CMD…")
    return opts["--root"], opts["--stage"], opts["--shim"], binds, cmd


def main(argv: list[str]) -> int:
    root, stage, shim, binds, cmd = parse(argv)
    cwd = os.getcwd()
    try:
        enter_namespaces()
        merged = make_root(root, stage)
        populate(merged, binds + [cwd], shim)
        os.chroot(merged)
    except (SetupError, OSError) as e:
        print(f"xfrmd run --userland: {root}: {e}", file=sys.stderr)
        return SETUP_FAILED
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    env = inside_env(os.environ, shim)
    # the PATH search by hand: after chroot(2) no further module can be imported
    candidates = [cmd[0]] if "/" in cmd[0] else [
        d + "/" + cmd[0] for d in env["PATH"].split(":") if d]
    error = FileNotFoundError(2, os.strerror(2))
    for path in candidates:
        try:
            os.execve(path, cmd, env)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            error = e
    print(f"xfrmd run: {cmd[0]}: {error.strerror} (in {root})", file=sys.stderr)
    return 127 if isinstance(error, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
