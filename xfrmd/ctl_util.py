"""What every ``xfrmd ctl`` verb module shares: how an answer is reported and how a wrong
call says its usage. The verb modules (``xfrmd/ctl/*.py``) import these; :mod:`xfrmd.ctl`
imports the verb modules and assembles their tables."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable, Protocol


class Service(Protocol):
    """What a verb asks the server through (:class:`xfrmd.client.Service`)."""

    def query(self, op: str, **fields: Any) -> dict[str, Any]: ...


# ``fn(svc, args) -> exit status``
VerbFn = Callable[[Service, list[str]], int]
# A verb module's table: verb name -> (function, usage line shown by ``xfrmd ctl help``).
VerbTable = dict[str, tuple[VerbFn, str]]


def usage_error(usage: str) -> SystemExit:
    """What a verb raises when called wrong: its usage line."""
    return SystemExit("usage: xfrmd ctl " + usage)


def result(res: dict[str, Any], show: bool = False) -> int:
    """A query's answer as the verb's exit status: an error on stderr (1); with ``show``,
    the answer's ``text`` (or the answer as JSON) on stdout."""
    if res.get("errno"):
        print(f"xfrmd ctl: {res.get('error') or res['errno']}", file=sys.stderr)
        return 1
    if show:
        out = {k: v for k, v in res.items() if k != "errno"}
        if "text" in out:
            print(out["text"], end="" if out["text"].endswith("\n") else "\n")
        elif out:
            print(json.dumps(out, indent=2))
    return 0


def split_json(args: list[str]) -> tuple[list[str], bool | None]:
    """``args`` without ``--json`` / ``-v`` / ``--verbose``, and how to report: True (JSON),
    False (one line), None (one line only when stdout is a terminal)."""
    how = None
    if "-v" in args or "--verbose" in args:
        how = False
    if "--json" in args:
        how = True
    return [a for a in args if a not in ("--json", "-v", "--verbose")], how


def done(res: dict[str, Any], how: bool | None, line: str, what: dict[str, Any]) -> int:
    """A state-changing verb's answer: on success one line saying what it did, or ``what``
    as one JSON object with ``--json``. Without either flag the line goes to a terminal only:
    scripts that capture ``xfrmd ctl`` output around these verbs (as with ``ip``, which is
    silent on success) keep reading what they read before. Errors as :func:`result`."""
    if res.get("errno"):
        return result(res)
    if how is True:
        print(json.dumps(what))
    elif how is False or sys.stdout.isatty():
        print(line)
    return 0
