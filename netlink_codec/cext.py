"""The optional C halves of hot paths: find, build and load one small CPython extension.

A hot path that has a C version keeps its pure-Python one, which stays the reference: both
pass the same tests (``XFRMD_PURE_PYTHON=1`` selects the Python one everywhere; CI runs the
suites both ways). The C source sits next to the module that uses it. It is compiled by
``python3 -m xfrmd.cext build`` (the README's install commands run it) — never on import,
which must stay fast — into the cache directory under a name carrying the hash of the source
(with the local headers it includes) and of the interpreter's ABI, so an edited source or
header or another Python is never loaded stale;
a wheel may carry it prebuilt next to the source under the same name (setup.py).

:func:`load` returns the module, or None when the Python version is to be used: asked for,
not built for this source, or no longer loadable. This module imports nothing but the
standard library, so that the codec layer can use it.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from types import ModuleType

PURE_ENV = "XFRMD_PURE_PYTHON"


class BuildError(RuntimeError):
    pass


def pure_python() -> bool:
    """``XFRMD_PURE_PYTHON=1``: every hot path runs its Python version."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def cache_dir() -> str:
    return os.environ.get("XFRMD_CEXT_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xfrmd", "cext")


def _ext_suffix() -> str:
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


# ``#include "file"``: a header of the checkout (``<file>`` ones are the system's)
_LOCAL_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)


def source_files(src: str) -> list[str]:
    """``src`` and the local headers it includes, and those they include, each once, in the
    order first met. A quoted include is looked for in the including file's directory, as
    the compiler looks first; one not there is the interpreter's (``"internal/…"``, found on
    the include path) and is not followed: the interpreter is in the key already."""
    files, i = [os.path.normpath(src)], 0
    while i < len(files):
        with open(files[i], "rb") as f:
            text = f.read()
        for inc in _LOCAL_INCLUDE.findall(text):
            p = os.path.normpath(os.path.join(os.path.dirname(files[i]), inc.decode()))
            if p not in files and os.path.isfile(p):
                files.append(p)
        i += 1
    return files


def built_name(name: str, src: str) -> str:
    """``_nlfast-<hash>.cpython-311-x86_64-linux-gnu.so``: the hash covers the source, the
    local headers it includes (:func:`source_files`: an edited header rebuilds every
    extension that includes it) and the interpreter it is built for."""
    h = hashlib.sha256()
    for path in source_files(src):
        with open(path, "rb") as f:
            h.update(f.read())
    h.update(f"{sys.implementation.cache_tag} {sys.version} {_ext_suffix()}".encode())
    return f"{name.rpartition('.')[2]}-{h.hexdigest()[:16]}{_ext_suffix()}"


def find(name: str, src: str) -> str | None:
    """The built file for this source and interpreter: a wheel's prebuilt one next to the
    source, else the cache's; None if neither exists."""
    fname = built_name(name, src)
    for d in (os.path.dirname(src), cache_dir()):
        p = os.path.join(d, fname)
        if os.path.exists(p):
            return p
    return None


def load(name: str, src: str) -> ModuleType | None:
    """Import the extension ``name`` (its dotted name: the init function is
    ``PyInit_<last part>``) built from ``src``; None for the pure-Python path."""
    if pure_python():
        return None
    try:
        path = find(name, src)
    except OSError:             # the source is not installed
        return None
    if path is None:
        return None
    loader = importlib.machinery.ExtensionFileLoader(name, path)
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    if spec is None:
        return None
    try:
        mod = importlib.util.module_from_spec(spec)
        loader.exec_module(mod)
    except ImportError:         # built for another libc or interpreter build: use Python
        return None
    return mod


def build_flags() -> list[str]:
    return ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
            "-fno-strict-aliasing", "-shared", "-fPIC"]


def find_cc() -> str | None:
    """The C compiler: ``$CC``, else cc or gcc on PATH."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def compile_to(out: str, args: list[str]) -> str | None:
    """Run the compiler with ``args`` and ``-o`` a temporary file next to ``out``, renamed to
    ``out`` when it worked (a concurrent loader never sees half a file); the compiler's
    messages when it failed. The caller has checked :func:`find_cc`."""
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(out)[1], dir=os.path.dirname(out))
    os.close(fd)
    p = subprocess.run([find_cc() or "cc", *args, "-o", tmp], capture_output=True, text=True)
    if p.returncode:
        os.unlink(tmp)
        return p.stderr.strip()
    os.replace(tmp, out)
    return None


def build(name: str, src: str, out_dir: str | None = None) -> str:
    """Compile ``src`` for this interpreter (if not built yet); returns the built file.
    Raises :class:`BuildError` with one line saying what is missing."""
    out = os.path.join(out_dir or cache_dir(), built_name(name, src))
    if os.path.exists(out):
        return out
    if not find_cc():
        raise BuildError("no C compiler (cc or gcc): install gcc (Debian: apt-get install gcc)")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise BuildError(f"no Python.h in {include}: install the interpreter's headers "
                         "(Debian: apt-get install python3-dev)")
    err = compile_to(out, [*build_flags(), f"-I{include}", src])
    if err is not None:
        raise BuildError(f"compiling {os.path.basename(src)} failed:\n{err}")
    return out
