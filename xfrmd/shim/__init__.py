"""The preload shim (C source in tools/shim/xfrmd_shim.c): build it and find it.

A wheel carries it prebuilt (setup.py). Otherwise ``python3 -m xfrmd.shim build`` compiles it
with the system's C compiler into
``$XFRMD_SHIM_DIR`` (default ``~/.cache/xfrmd``) under a name that carries the source's hash,
so a changed source is rebuilt and concurrent users never see a half-written library.
"""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_CANDIDATES = [os.path.join(_HERE, "xfrmd_shim.c"),
               os.path.join(_HERE, "..", "..", "tools", "shim", "xfrmd_shim.c")]


class ShimError(RuntimeError):
    pass


def source() -> str:
    for c in _CANDIDATES:
        if os.path.exists(c):
            return os.path.normpath(c)
    raise ShimError("xfrmd: the shim's C source (tools/shim/xfrmd_shim.c) is not installed")


def _cache_dir() -> str:
    return os.environ.get("XFRMD_SHIM_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xfrmd")


def _stamp() -> str:
    return os.path.join(_cache_dir(), "xfrmd_shim.digest")


def _source_key(src: str) -> str:
    st = os.stat(src)
    return f"{src}\0{st.st_size}\0{st.st_mtime_ns}\0"


def source_digest(src: str) -> tuple[str, bool]:
    """The first 16 hex digits of the source's sha256 (the shim's name carries it), and
    whether it is the one kept in the cache directory.

    Start-up time of `xfrmd run`: hashing the 170 kB source took ≈ 2 ms, and loading
    hashlib's OpenSSL 3 ms more, at every run. The digest is kept beside the shims built in
    the cache directory (:func:`path`) and used while the source's path, size and mtime are
    those it was taken of, as CPython trusts a .pyc; it is taken again when they change."""
    key = _source_key(src)
    try:
        with open(_stamp(), encoding="utf-8") as f:
            kept = f.read()
        if kept.startswith(key) and len(kept) == len(key) + 16:
            return kept[len(key):], True
    except (OSError, UnicodeDecodeError):
        pass
    # start-up time: hashlib only when the kept digest does not match the source
    import hashlib
    with open(src, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16], False


def _keep(src: str, digest: str) -> None:
    """Written whole and renamed: a reader never sees half of one; not at all where the
    directory is not writable."""
    stamp = _stamp()
    tmp = f"{stamp}.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(_source_key(src) + digest)
        os.replace(tmp, stamp)
    except OSError:
        pass


def path(build: bool = True) -> str:
    """The shared object for LD_PRELOAD: the one a wheel carries (built for its platform
    from the same source), else one compiled on first use into the cache directory (the
    only place a shim's digest is kept: a wheel's user has nothing written there)."""
    src = source()
    digest, kept = source_digest(src)
    prebuilt = os.path.join(_HERE, f"xfrmd_shim-{digest}.so")
    if os.path.exists(prebuilt):
        return prebuilt
    out = os.path.join(_cache_dir(), f"xfrmd_shim-{digest}.so")
    if os.path.exists(out):
        if not kept:
            _keep(src, digest)
        return out
    if not build:
        return out
    from netlink_codec import cext      # start-up time: sysconfig, tempfile, for a build only
    if not cext.find_cc():
        raise ShimError("xfrmd: a C compiler (cc or gcc) is needed to build the preload shim; "
                        "install gcc (Debian: apt-get install gcc libc6-dev)")
    err = cext.compile_to(out, ["-O2", "-Wall", "-shared", "-fPIC", src, "-ldl"])
    if err is not None:
        raise ShimError(f"xfrmd: building the shim failed:\n{err}")
    _keep(src, digest)
    return out
