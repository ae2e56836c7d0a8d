"""``xfrmd lag-report [--json] [--html FILE]``."""
from __future__ import annotations

import argparse
import sys


def add_lagreport_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("lag-report", help="run the LAG offload review's scenarios on every "
                       "LAG model and pairing of lower devices, print the matrix")
    p.add_argument("--json", action="store_true", help="the matrix as JSON on stdout")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    p.set_defaults(fn=lambda args: run(args.json, args.html))


def _progress(done: int, total: int, what: str) -> None:
    """One progress line, rewritten in place on a terminal; in a log only the last."""
    if sys.stderr.isatty():
        end = "\n" if done == total else ""
        sys.stderr.write(f"\rlag-report: {done}/{total} cells, now {what:<36}{end}")
    elif done == total:
        sys.stderr.write(f"lag-report: {total} cells\n")
    sys.stderr.flush()


def run(json_out: bool = False, html_path: str | None = None) -> int:
    # start-up time: the kernel model loads only for this command, not for `xfrmd --help`
    from .report import run_report
    from .render import as_json, text, write_html
    report = run_report(progress=_progress)
    sys.stdout.write(as_json(report) if json_out else text(report))
    if html_path:
        write_html(report, html_path)
        sys.stderr.write(f"lag-report: wrote {html_path}\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xfrmd lag-report")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--html", metavar="FILE")
    args = parser.parse_args(argv)
    return run(args.json, args.html)
