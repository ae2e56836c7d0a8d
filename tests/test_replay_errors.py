"""Replay errors say where (issue 21, deliver 6): a failed line as `ip -batch` reports it,
an unreadable script and a golden mismatch with file:line."""
from __future__ import annotations

import subprocess

from .conftest import XFRMD

SA = ('xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 1 mode tunnel '
      'aead "rfc4106(gcm(aes))" 0x' + "11" * 20 + " 128\n")


def _replay(*args, cwd):
    return subprocess.run(XFRMD + ["replay", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def test_a_failed_line_is_reported_with_file_and_line(tmp_path):
    (tmp_path / "s.ip").write_text("# set up\nlink add d9 type dummy\n" + SA + SA)
    p = _replay("s.ip", cwd=tmp_path)
    assert p.returncode == 1
    assert p.stderr.splitlines()[-1] == "Command failed s.ip:4"
    assert p.stderr.count("Command failed") == 1                  # lines 2 and 3 worked


def test_an_unreadable_script_names_the_line(tmp_path):
    (tmp_path / "s.ip").write_text(SA + 'xfrm state add "abc\n')
    p = _replay("s.ip", cwd=tmp_path)
    assert (p.returncode, p.stderr) == (1, "xfrmd replay: s.ip:2: Unterminated quoted string\n")
    p = _replay("missing.ip", cwd=tmp_path)
    assert (p.returncode, p.stderr) == (1, "xfrmd replay: missing.ip: No such file or directory\n")


def test_a_golden_mismatch_names_script_and_golden_lines(tmp_path):
    (tmp_path / "s.ip").write_text("link add d9 type dummy\n" + SA + "xfrm state count\n")
    assert _replay("s.ip", "--record", "s.golden", cwd=tmp_path).returncode == 0
    golden = (tmp_path / "s.golden").read_text()
    assert golden.splitlines()[2:] == ["$ xfrm state count", "\t SAD count 1"]
    (tmp_path / "s.golden").write_text(golden.replace("SAD count 1", "SAD count 2"))
    p = _replay("s.ip", "--expect", "s.golden", cwd=tmp_path)
    assert p.returncode == 1
    assert p.stderr == ("xfrmd replay: s.ip:3: xfrm state count: expected '\\t SAD count 2', "
                        "got '\\t SAD count 1' (s.golden:4)\n")
