"""The wheel carries the preload shim compiled for its platform, so that ``pip install`` of
a wheel needs no C compiler (``xfrmd/shim/xfrmd_shim-<hash>.so``, the hash of its source),
and the C source, from which :func:`xfrmd.shim.path` builds it at run time where no
prebuilt one matches. It carries the hot paths' C extensions (xfrmd/cext.py) prebuilt the
same way, next to their sources, when the interpreter's headers are there; without them the
pure-Python paths run. Everything else is in pyproject.toml."""
import hashlib
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

SRC = os.path.join("tools", "shim", "xfrmd_shim.c")


class build_py_with_shim(build_py):
    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "xfrmd", "shim")
        os.makedirs(dest, exist_ok=True)
        shutil.copy(SRC, dest)
        if getattr(self, "editable_mode", False):
            return              # an editable install builds the shim on first use
        with open(SRC, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            print("xfrmd: no C compiler: the wheel has no prebuilt shim (it is built on "
                  "first use)", file=sys.stderr)
            return
        out = os.path.join(dest, f"xfrmd_shim-{digest}.so")
        subprocess.run([cc, "-O2", "-Wall", "-shared", "-fPIC", "-o", out, SRC, "-ldl"],
                       check=True)
        self._build_extensions()

    def _build_extensions(self):
        """Each C extension of xfrmd/cext.py, built next to its copied source."""
        sys.path.insert(0, os.path.abspath("."))
        try:
            from netlink_codec import cext
            from xfrmd.cext import EXTENSIONS
        finally:
            sys.path.pop(0)
        for name, rel in EXTENSIONS.items():
            src = os.path.join(self.build_lib, rel)
            try:
                cext.build(name, src, out_dir=os.path.dirname(src))
            except cext.BuildError as e:
                print(f"xfrmd: {name} not prebuilt ({e})", file=sys.stderr)


cmdclass = {"build_py": build_py_with_shim}
try:                                           # setuptools >= 70.1, else the wheel package
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None
if bdist_wheel is not None:
    class bdist_wheel_platform(bdist_wheel):
        """Any Python 3, but one platform: the shim is a shared object, not an extension."""

        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            return "py3", "none", super().get_tag()[2]

    cmdclass["bdist_wheel"] = bdist_wheel_platform

setup(cmdclass=cmdclass)
