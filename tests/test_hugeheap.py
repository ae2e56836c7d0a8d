"""xfrmd.hugeheap (xfrmd/_hugeheap.c): once installed (``tune_gc``, as ``xfrmd serve`` and
``xfrmd run`` call it), the objects the process makes live in 2 MiB-aligned regions asked to be
huge pages, big blocks (a big dict's tables) are huge-page mappings of their own, every byte
stays what was written, and freed memory goes back to the system — the regions' own and the
arenas CPython made before. Off under ``XFRMD_PURE_PYTHON=1``."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlink_codec import cext
from xfrmd import hugeheap

from .conftest import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = 2 << 20


def _built() -> None:
    if cext.pure_python():
        assert hugeheap.stats() == {} and not hugeheap.install()
        pytest.skip("the pure-Python run: the allocator is off (checked above)")
    require(hugeheap._hugeheap is not None, "xfrmd._hugeheap is not built (python3 -m xfrmd.cext build)")


def _run(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter; what its last line printed (JSON)."""
    prelude = ("import gc, json, os, sys\nfrom xfrmd import hugeheap\n"
               "def rss():\n"
               "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) * 1024\n"
               "def vmas():\n"
               "    out, cur = {}, None\n"
               "    for line in open('/proc/self/smaps'):\n"
               "        f = line.split()\n"
               "        if '-' in f[0] and len(f) >= 5:\n"
               "            lo, hi = (int(v, 16) for v in f[0].split('-'))\n"
               "            cur = out[lo] = {'hi': hi}\n"
               "        elif f[0] == 'VmFlags:':\n"
               "            cur['flags'] = f[1:]\n"
               "    return out\n")
    p = subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True,
                       text=True, env={**os.environ, **env}, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_new_objects_live_in_huge_page_regions_and_go_back_when_freed():
    _built()
    out = _run(
        "assert hugeheap.install()\n"
        "objs = [(i, str(i)) for i in range(300_000)]\n"
        "bases = hugeheap._hugeheap.region_bases()\n"
        "inside = sum(any(b <= id(o) < b + (2 << 20) for b in bases) for o in objs[-2000:])\n"
        "v = vmas()\n"
        "advised = all('hg' in next(m['flags'] for lo, m in v.items() if lo <= b < m['hi']) for b in bases)\n"
        "held = rss()\n"
        "s1 = hugeheap.stats()\n"
        "del objs; gc.collect()\n"
        "print(json.dumps({'bases': bases, 'inside': inside, 'advised': advised, 's1': s1,\n"
        "                  's2': hugeheap.stats(), 'freed': held - rss()}))\n")
    assert out["s1"]["regions"] >= 10 and out["s1"]["arena_size"] > 0
    assert all(b % REGION == 0 for b in out["bases"])
    assert out["inside"] == 2000                      # the newest objects: all in the regions
    assert out["advised"]                             # VmFlags "hg": madvise(MADV_HUGEPAGE)
    # freed: the regions unmapped (one empty one kept), the memory back to the system
    assert out["s2"]["regions"] <= 3 < out["s1"]["regions"]
    assert out["s2"]["unmapped"] >= out["s1"]["regions"] - 3
    assert out["freed"] > 20 << 20


def test_arenas_made_before_the_install_go_back_to_cpythons_allocator():
    _built()
    out = _run(
        "before = [(i, str(i)) for i in range(300_000)]\n"
        "assert hugeheap.install()\n"
        "held = rss()\n"
        "del before; gc.collect()\n"
        "after = [(i, str(i)) for i in range(100_000)]\n"
        "ok = all(t == (i, str(i)) for i, t in enumerate(after))\n"
        "print(json.dumps({'s': hugeheap.stats(), 'freed': held - rss(), 'ok': ok}))\n")
    assert out["s"]["default_frees"] >= 10           # unmapped by the allocator that made them
    assert out["freed"] > 10 << 20
    assert out["ok"]


def test_big_blocks_are_huge_page_mappings_of_their_own():
    _built()
    out = _run(
        "import ctypes\n"
        "assert hugeheap.install()\n"
        "z = bytes(9 << 20)\n"                        # calloc: a fresh mapping, zeros
        "zaddr = id(z)\n"
        "zeros = z.count(0) == len(z)\n"
        "b = bytearray(os.urandom(6 << 20))\n"
        "addr = ctypes.addressof((ctypes.c_char * 1).from_buffer(b))\n"
        "d = {i: i for i in range(400_000)}\n"        # its tables: a block of ~ 20 MiB
        "s = hugeheap.stats()\n"
        "v = vmas()\n"
        "advised = 'hg' in next(m['flags'] for lo, m in v.items() if lo <= addr < m['hi'])\n"
        "del z, b, d; gc.collect()\n"
        "print(json.dumps({'zaddr': zaddr, 'zeros': zeros, 'addr': addr, 's': s,\n"
        "                  'advised': advised, 's2': hugeheap.stats()}))\n")
    assert out["zeros"]
    assert out["addr"] % REGION == 16 and out["zaddr"] % REGION == 16
    assert out["advised"]
    assert out["s"]["big_blocks"] >= 3
    assert out["s2"]["big_frees"] >= out["s"]["big_blocks"]


def test_tune_gc_installs_it_and_pure_python_leaves_it_off():
    _built()
    on = _run("from xfrmd.embedded import tune_gc\ntune_gc()\nprint(json.dumps(hugeheap.stats()))")
    assert on["installed"] is True
    off = _run("from xfrmd.embedded import tune_gc\ntune_gc()\n"
               "print(json.dumps([hugeheap.install(), hugeheap.stats()]))",
               **{cext.PURE_ENV: "1"})
    assert off == [False, {}]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 12 << 20),
       st.lists(st.tuples(st.booleans(), st.integers(0, 12 << 20)), min_size=1, max_size=8))
def test_a_block_resized_across_the_threshold_keeps_its_bytes(start, ops):
    """realloc of big blocks (4 MiB and more) and of malloc's, growing and shrinking across
    the threshold, in this process (the allocator installed in the test run itself): the
    bytes are the model's."""
    _built()
    assert hugeheap.install()
    model = bytes(range(256)) * (start // 256) + bytes(start % 256)
    buf = bytearray(model)
    for grow, n in ops:
        if grow:
            chunk = bytes([len(model) % 251]) * n
            buf += chunk
            model += chunk
        else:
            del buf[n:]
            model = model[:n]
        assert len(buf) == len(model) and buf == model
    if start >= 4 << 20:
        assert hugeheap.stats()["big_allocs"] >= 1
