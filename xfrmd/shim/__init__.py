"""The preload shim (C source in tools/shim/xfrmd_shim.c): build it and find it.

A wheel carries it prebuilt (setup.py). Otherwise ``python3 -m xfrmd.shim build`` compiles it
with the system's C compiler into
``$XFRMD_SHIM_DIR`` (default ``~/.cache/xfrmd``) under a name that carries the source's hash,
so a changed source is rebuilt and concurrent users never see a half-written library.
"""
from __future__ import annotations

import os

# Start-up time (`xfrmd run`, issue 22): the sha256 of the interpreter's own module, not
# hashlib's OpenSSL one (≈ 3 ms to load; the digest is the same), and the compiler driver
# (netlink_codec.cext: sysconfig, tempfile) only when the shim must be built.
try:
    from _sha256 import sha256          # CPython ≤ 3.11
except ImportError:
    try:
        from _sha2 import sha256        # CPython ≥ 3.12
    except ImportError:
        from hashlib import sha256

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


def path(build: bool = True) -> str:
    """The shared object for LD_PRELOAD: the one a wheel carries (built for its platform
    from the same source), else one compiled on first use into the cache directory."""
    src = source()
    with open(src, "rb") as f:
        digest = sha256(f.read()).hexdigest()[:16]
    prebuilt = os.path.join(_HERE, f"xfrmd_shim-{digest}.so")
    if os.path.exists(prebuilt):
        return prebuilt
    out = os.path.join(_cache_dir(), f"xfrmd_shim-{digest}.so")
    if os.path.exists(out) or not build:
        return out
    from netlink_codec import cext
    if not cext.find_cc():
        raise ShimError("xfrmd: a C compiler (cc or gcc) is needed to build the preload shim; "
                        "install gcc (Debian: apt-get install gcc libc6-dev)")
    err = cext.compile_to(out, ["-O2", "-Wall", "-shared", "-fPIC", src, "-ldl"])
    if err is not None:
        raise ShimError(f"xfrmd: building the shim failed:\n{err}")
    return out
