"""What the text-level differential tests of ``ip xfrm`` share: a script's lines run with
the real ``ip`` in a fresh kernel netns and through xfrmd's ``ip`` replayer against an xfrmd
built like the running kernel; stdout, stderr and exit status compared line by line."""
from __future__ import annotations

import shlex

import pytest

from tests.conftest import closing_fixture
from tests.differential.kconfig_host import host_profile
from tests.replay.realip import RealNetns, have_tools
from xfrmd.replay.runner import Backend, LineResult, run_line
from xfrmd.testing import make_kernel, running_server


def script_lines(script: str) -> list[str]:
    return [ln for ln in script.strip().splitlines() if ln.strip()]


def real_netns_fixture():
    """The module's fresh kernel netns (needs root, ip and strace)."""
    return closing_fixture(RealNetns, have_tools,
                           "needs root, ip and strace for a real-kernel netns")


def replay_on_xfrmd(lines: list[str]) -> list[LineResult]:
    """Each line through the replayer against a fresh `bare` xfrmd built like the running
    kernel (its kconfig)."""
    k = make_kernel("bare")
    host_profile().apply(k)                 # built like the running kernel
    with running_server(k) as srv:
        b = Backend(path=srv.path)
        try:
            return [run_line(b, shlex.split(ln), i) for i, ln in enumerate(lines, 1)]
        finally:
            b.close()


def text_diffs(real_ns: RealNetns, lines: list[str], fake_results: list[LineResult]) -> list[str]:
    """Each line whose (stdout, stderr, status) differ between the kernel and xfrmd."""
    diffs = []
    for line, fake in zip(lines, fake_results):
        _, out, err, status = real_ns.ip(line)
        if (out, err, status) != (fake.stdout, fake.stderr, fake.status):
            diffs.append(f"$ ip {line}\nreal  [{status}] {out!r} {err!r}\n"
                         f"xfrmd [{fake.status}] {fake.stdout!r} {fake.stderr!r}")
    return diffs


def text_tests(script: str):
    """``real_ns, fake_results, test_x = text_tests(SCRIPT)``: the module's fixtures (the
    kernel netns; the replayer's results for every line against xfrmd) and its test (each
    line's text is the kernel's)."""
    lines = script_lines(script)
    real_ns = real_netns_fixture()

    @pytest.fixture(scope="module")
    def fake_results():
        return replay_on_xfrmd(lines)

    def test_text(real_ns, fake_results):
        diffs = text_diffs(real_ns, lines, fake_results)
        assert not diffs, "\n".join(diffs)
    return real_ns, fake_results, test_text
