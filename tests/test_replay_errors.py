"""Replay errors say where: a failed line as `ip -batch` reports it,
an unreadable script and a golden mismatch with file:line. In-process: the CLI's main()."""
from __future__ import annotations

import pytest

from xfrmd.cli import main as xfrmd

SA = ('xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 1 mode tunnel '
      'aead "rfc4106(gcm(aes))" 0x' + "11" * 20 + " 128\n")


@pytest.fixture
def replay(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XFRMD_SOCKET", raising=False)

    def run(*args):
        rc = xfrmd(["replay", *args])
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


def test_a_failed_line_is_reported_with_file_and_line(replay, tmp_path):
    (tmp_path / "s.ip").write_text("# set up\nlink add d9 type dummy\n" + SA + SA)
    rc, _, err = replay("s.ip")
    assert rc == 1
    assert err.splitlines()[-1] == "Command failed s.ip:4"
    assert err.count("Command failed") == 1                  # lines 2 and 3 worked


def test_an_unreadable_script_names_the_line(replay, tmp_path):
    (tmp_path / "s.ip").write_text(SA + 'xfrm state add "abc\n')
    assert replay("s.ip") == (1, "", "xfrmd replay: s.ip:2: Unterminated quoted string\n")
    assert replay("missing.ip") == (1, "", "xfrmd replay: missing.ip: No such file or directory\n")


def test_a_golden_mismatch_names_script_and_golden_lines(replay, tmp_path):
    (tmp_path / "s.ip").write_text("link add d9 type dummy\n" + SA + "xfrm state count\n")
    assert replay("s.ip", "--record", "s.golden")[0] == 0
    golden = (tmp_path / "s.golden").read_text()
    assert golden.splitlines()[2:] == ["$ xfrm state count", "\t SAD count 1"]
    (tmp_path / "s.golden").write_text(golden.replace("SAD count 1", "SAD count 2"))
    rc, out, err = replay("s.ip", "--expect", "s.golden")
    assert (rc, out) == (1, "\t SAD count 1\n")
    assert err == ("xfrmd replay: s.ip:3: xfrm state count: expected '\\t SAD count 2', "
                   "got '\\t SAD count 1' (s.golden:4)\n")
