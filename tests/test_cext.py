"""The hot paths' C extensions (netlink_codec/cext.py, xfrmd/cext.py): built and loaded only
for their exact source and interpreter, never loaded under ``XFRMD_PURE_PYTHON=1``, required
in CI — and the pure-Python paths they replace pass the same suites (the last test runs them
again with the extensions switched off)."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig

import pytest

from netlink_codec import cext
from xfrmd import cext as registry

from .conftest import require

TINY = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *noargs) { return PyLong_FromLong(%d); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_tiny", NULL, -1, methods};
PyMODINIT_FUNC PyInit__tiny(void) { return PyModule_Create(&mod); }
"""

# The files that exercise the hot paths with a C version: run again in pure Python.
PURE_SUITE = [
    "tests/test_cext.py",
    "tests/test_codec_fuzz.py",
    "tests/test_codec_vectors.py",
    "tests/test_replay_errors.py",
    "tests/test_server_semantics.py",
    "tests/test_transport_parity.py",    # the reactor round (xfrmd/_transport.c)
    "tests/test_transport_in_step.py",   # its turn after a request in step
    "tests/test_netlink_reopen.py",      # Kernel.reopen's in-place case (xfrmd/netlink/_reopen.c)
    "tests/test_shim_robust_server.py",  # Server._replay's REOPEN op (the same C file)
    "tests/test_trace_tap.py",           # the tap's record (xfrmd/_taprec.c)
    "tests/test_trace_tap_parity.py",
    "tests/test_security.py",
    "tests/test_sad.py",
    "tests/test_sad_acquire.py",
    "tests/test_sad_events.py",
    "tests/test_spd_hw_first.py",
    "tests/test_spd_lifetimes.py",
    "tests/test_spd_tables.py",
    "tests/test_poldump.py",
    "tests/test_sadump.py",
    "tests/test_nlfast.py",
    "tests/test_rtnl_new_fuzz.py",
    "tests/test_esp_datapath.py",
    "tests/test_datapath_batch.py",
    "tests/test_datapath_input.py",
    "tests/test_datapath_output.py",
    "tests/test_datapath_lag_replay.py",
    "tests/test_lag_resolver.py",
    "tests/test_espfast.py",
    "tests/test_benchmarks.py",   # --quick against the quick-pure baseline
    "tests/differential",       # errno, extack and bytes against the real kernel (~2.5 min)
]


def _headers_present() -> bool:
    return os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("XFRMD_CEXT_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(cext.PURE_ENV, raising=False)
    require(_headers_present(), "needs the interpreter's headers (python3-dev)")
    src = tmp_path / "_tiny.c"
    src.write_text(TINY % 42)
    return src


def test_not_built_means_python(tiny):
    assert cext.find("_tiny", str(tiny)) is None
    assert cext.load("_tiny", str(tiny)) is None


def test_built_loads_and_pure_env_refuses_it(tiny, monkeypatch):
    path = cext.build("_tiny", str(tiny))
    assert os.path.basename(path).startswith("_tiny-") and path.endswith(
        sysconfig.get_config_var("EXT_SUFFIX"))
    assert cext.load("_tiny", str(tiny)).answer() == 42
    monkeypatch.setenv(cext.PURE_ENV, "1")
    assert cext.load("_tiny", str(tiny)) is None


def test_an_edited_source_is_never_loaded_stale(tiny):
    cext.build("_tiny", str(tiny))
    tiny.write_text(TINY % 7)
    assert cext.load("_tiny", str(tiny)) is None     # the old build no longer matches
    cext.build("_tiny", str(tiny))
    assert cext.load("_tiny", str(tiny)).answer() == 7


def test_an_edited_local_header_is_never_loaded_stale(tiny):
    """A header the source includes with quotes is part of the build key."""
    header = tiny.parent / "inc" / "answer.h"
    header.parent.mkdir()
    header.write_text("#define ANSWER 5\n")
    tiny.write_text((TINY % 0).replace("#include <Python.h>", '#include <Python.h>\n#include "inc/answer.h"')
                    .replace("PyLong_FromLong(0)", "PyLong_FromLong(ANSWER)"))
    cext.build("_tiny", str(tiny))
    assert cext.load("_tiny", str(tiny)).answer() == 5
    header.write_text("#define ANSWER 6\n")
    assert cext.load("_tiny", str(tiny)) is None     # the old build no longer matches
    cext.build("_tiny", str(tiny))
    assert cext.load("_tiny", str(tiny)).answer() == 6


def test_a_quoted_include_not_beside_the_source_is_the_interpreters(tmp_path):
    """``#include "internal/pycore_dict.h"`` (_polfast.c) is found on the include path, not
    next to the source: not part of the key, and no error."""
    src, mine = tmp_path / "_x.c", tmp_path / "mine.h"
    src.write_text('#include "internal/pycore_dict.h"\n#include "mine.h"\n')
    mine.write_text("")
    assert cext.source_files(str(src)) == [str(src), str(mine)]

def test_the_slots_header_keys_every_extension_that_includes_it(tmp_path):
    """slot_offset and learn_offsets live in xfrmd/_slots.h, included by the nine extensions
    that read slots at their offsets: an edit of it changes the build key of each of them,
    and of no other extension."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in registry.EXTENSIONS:
        for path in cext.source_files(registry.source(name)):
            copy = tmp_path / os.path.relpath(path, root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(open(path, "rb").read())

    def keys():
        return {name: cext.built_name(name, str(tmp_path / rel))
                for name, rel in registry.EXTENSIONS.items()}

    before = keys()
    header = tmp_path / "xfrmd" / "_slots.h"
    header.write_text(header.read_text() + "/* edited */\n")
    after = keys()
    assert {n for n in before if before[n] != after[n]} == {
        "xfrmd.netlink._rcvfast", "xfrmd._transport", "xfrmd._taprec", "xfrmd.netlink._reopen",
        "xfrmd.datapath._espfast", "xfrmd.xfrm._sacons", "xfrmd.xfrm._sadump",
        "xfrmd.xfrm._polfast", "xfrmd.xfrm._poldump"}

def test_a_source_that_does_not_compile_says_so_and_leaves_nothing(tiny):
    tiny.write_text("this is not C;\n")
    with pytest.raises(cext.BuildError, match="compiling _tiny.c failed"):
        cext.build("_tiny", str(tiny))
    assert not os.listdir(os.environ["XFRMD_CEXT_DIR"])


def test_missing_compiler_is_one_line(tiny, monkeypatch):
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(cext.BuildError, match=r"no C compiler \(cc or gcc\)"):
        cext.build("_tiny", str(tiny))


def test_every_extension_is_built_in_ci():
    """The README's test command builds them; in CI a missing one is a failure."""
    if cext.pure_python():
        pytest.skip("this run is the pure-Python one")
    for name, path in registry.status():
        require(path is not None, f"{name} is not built (python3 -m xfrmd.cext build)")
        assert cext.load(name, registry.source(name)) is not None, name


def test_status_names_the_path_each_runs():
    env = {**os.environ, cext.PURE_ENV: "1"}
    out = subprocess.run([sys.executable, "-m", "xfrmd.cext", "status"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.count("pure Python (XFRMD_PURE_PYTHON)") == len(registry.EXTENSIONS)


# the rerun in parts, each under pytest's per-test timeout (pyproject: 300 s) on a loaded
# 2-core machine: the differential suite alone takes ~2.5 min
PURE_PARTS = {
    "differential": [f for f in PURE_SUITE if f == "tests/differential"],
    "benchmarks": [f for f in PURE_SUITE if f == "tests/test_benchmarks.py"],
    "unit": [f for f in PURE_SUITE
             if f not in ("tests/differential", "tests/test_benchmarks.py")],
}


@pytest.mark.slow
@pytest.mark.parametrize("part", sorted(PURE_PARTS))
def test_the_pure_python_paths_pass_the_same_suites(part):
    """CI runs both paths: the files above again, every extension switched off."""
    if cext.pure_python():
        pytest.skip("already the pure-Python run")
    assert sum(map(len, PURE_PARTS.values())) == len(PURE_SUITE)     # none left out
    env = {**os.environ, cext.PURE_ENV: "1"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-x", *PURE_PARTS[part]], cwd=root, env=env, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
