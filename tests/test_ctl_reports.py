"""State-changing `xfrmd ctl` verbs say what they did: one line on a terminal or with -v,
one JSON object with --json, and nothing in a script that did not ask (so scripts that
capture the output around them read what they read before, as with `ip`). In-process: the
CLI's own functions against one server thread."""
from __future__ import annotations

import json
import sys

import pytest

from xfrmd.cli import main as xfrmd

CASES = [
    (["netns", "add", "blue"], "added network namespace blue", {"netns": "blue", "action": "add"}),
    (["netns", "del", "blue"], "deleted network namespace blue",
     {"netns": "blue", "action": "del"}),
    (["clock", "advance", "2.5"], "clock advanced by 2.5 s (0 timers fired)",
     {"advanced": 2.5, "timers_run": 0}),
    (["link", "eth2", "carrier", "off"], "eth2: carrier off", {"dev": "eth2", "carrier": "off"}),
    (["link", "eth2", "carrier", "on"], "eth2: carrier on", {"dev": "eth2", "carrier": "on"}),
    (["link", "soe2", "unplug"], "soe2 unplugged (gone from its namespace until `link soe2 "
     "replug`)", {"dev": "soe2", "action": "unplug"}),
    (["link", "soe2", "replug"], "soe2 probed again as ifindex 12",
     {"dev": "soe2", "action": "replug", "ifindex": 12}),
    (["lag-model", "bond1", "replicated"], "bond1: LAG offload model replicated",
     {"bond": "bond1", "lag_model": "replicated"}),
    (["lag-model", "bond1", "off", "--notify-flush", "on"],
     "bond1: LAG offload model off, DELSA on LAG flush on",
     {"bond": "bond1", "lag_model": "off", "notify_flush": True}),
    (["kconfig", "set", "DUMMY=n", "CONFIG_BONDING=y"], "set CONFIG_DUMMY=n CONFIG_BONDING=y",
     {"kconfig": {"CONFIG_DUMMY": "n", "CONFIG_BONDING": "y"}}),
]


def _ctl(server, capsys, argv, rc=0) -> str:
    assert xfrmd(["ctl", "--socket", server.path, "--netns", "default", *argv]) == rc
    return capsys.readouterr().out


@pytest.mark.parametrize("mode", ["verbose", "json", "terminal", "script"])
def test_each_state_changing_verb_reports_what_it_did(xfrmd_server, capsys, monkeypatch, mode):
    for argv, line, obj in CASES:
        if mode == "terminal":
            monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        flag = {"verbose": ["-v"], "json": ["--json"]}.get(mode, [])
        out = _ctl(xfrmd_server, capsys, argv + flag)
        if mode == "json":
            assert json.loads(out) == obj, argv
        elif mode == "script":
            assert out == "", argv
        else:
            assert out == line + "\n", argv


def test_a_refused_change_prints_the_error_and_no_report(xfrmd_server, capsys):
    assert xfrmd(["ctl", "--socket", xfrmd_server.path, "netns", "add", "default", "-v"]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.startswith("xfrmd ctl: ")
    assert xfrmd(["ctl", "--socket", xfrmd_server.path, "link", "nosuch", "carrier", "off",
                  "--json"]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == "xfrmd ctl: no device 'nosuch'\n"
