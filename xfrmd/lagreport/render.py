"""The report as a terminal matrix, as JSON, and as one self-contained HTML page (tables,
the bond → slave → hardware-context tree of each admitted pairing, and each slave's
sequence numbers over the packets sent, drawn as inline SVG)."""
from __future__ import annotations

import html
import json
from typing import Any

from .report import Report
from .lab import MODELS, PAIRINGS
from .scenarios import OK, REFUSED, SCENARIOS, UNSAFE, Cell

LEGEND = ("cell: verdict sent/accepted/replay/dup/black-holed — sent: ESP packets on the "
          "wire; accepted: delivered by the receiver; replay: dropped as replays; dup: "
          "sequence numbers seen twice; black-holed: meant to be sent, never delivered")
SETUP = ("DUT: 802.3ad bond0 (xmit_hash_policy layer3+4) over two lower devices, SAs and "
         "policies in packet offload on bond0, AES-GCM-128, tunnel mode; peer: software IPsec")


def _cell_text(c: Cell, refusals: list[str]) -> str:
    if c.verdict == REFUSED:
        if c.note not in refusals:
            refusals.append(c.note)
        return f"refused [{refusals.index(c.note) + 1}]"
    if c.scenario == "S7":
        return "admitted"
    return f"{c.verdict} {c.sent}/{c.accepted}/{c.replay}/{c.dup}/{c.blackholed}"


def text(report: Report) -> str:
    refusals: list[str] = []
    width = max(len(p.title) for p in PAIRINGS) + 2
    out = [f"xfrmd lag-report: {len(SCENARIOS)} scenarios × {len(PAIRINGS)} pairings × "
           f"{len(MODELS)} LAG models", SETUP, LEGEND, ""]
    for s in SCENARIOS:
        out.append(f"{s.key}  {s.title}")
        out.append(" " * (width + 2) + "".join(f"{m:<26}" for m in MODELS).rstrip())
        notes = []
        for p in PAIRINGS:
            row = [report.cell(s.key, p.name, m) for m in MODELS]
            out.append(f"  {p.title:<{width}}"
                       + "".join(f"{_cell_text(c, refusals):<26}" for c in row).rstrip())
            notes += [f"    {p.name} {c.model}: {c.note}" for c in row
                      if c.note and c.verdict != REFUSED]
        out += notes + [""]
    out.append("refusals (the first set-up line the DUT refused, as ip printed it):")
    out += [f"  [{i}] {r}" for i, r in enumerate(refusals, 1)]
    return "\n".join(out) + "\n"


def as_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"


# -- HTML -------------------------------------------------------------------------------------

COLOURS = {OK: "#d8f0d8", UNSAFE: "#f6c6c6", REFUSED: "#e4e4e4", "black-holed": "#f8e2b8"}
SLAVE_COLOURS = {"s0": "#1f6fd1", "s1": "#d9480f", "bond0": "#555555"}


def _context(e: dict, r: dict) -> str:
    """A replica's hardware context as its driver names it, its scope and who shares it."""
    cid = r.get("context")
    c = e.get("contexts", {}).get(cid, {})
    ports = c.get("ports", [])
    return (f"{cid} (per {c.get('scope', '?')}"
            + (f", shared by {', '.join(ports)}" if len(ports) > 1 else "") + ")")


def _tree(c: Cell) -> str:
    """bond0 → slaves → hardware contexts of the SAs, from the bond's offload table."""
    items = []
    for e in c.where:
        sa = f"SA {e.get('spi', 0):#x} ({e.get('dir', '?')}, {e.get('model', '?')})"
        if "replicas" in e:
            subs = "".join(
                f"<li>{html.escape(str(r.get('slave')))}: replica, handle {r.get('handle')}, "
                f"hardware context {html.escape(_context(e, r))}</li>"
                for r in e["replicas"])
        elif "valid_on" in e:
            subs = (f"<li>{html.escape(str(e.get('slave')))}: the one hardware context "
                    f"(handle {e.get('handle')}), valid on "
                    f"{html.escape(', '.join(e['valid_on']))}</li>")
        else:
            subs = f"<li>{html.escape(str(e.get('slave', '?')))}: handle {e.get('handle')}</li>"
        items.append(f"<li>{html.escape(sa)}<ul>{subs}</ul></li>")
    return f"<ul class='tree'><li>bond0<ul>{''.join(items)}</ul></li></ul>"


def _plot(c: Cell, title: str) -> str:
    """Sequence number against packet number, one colour per slave."""
    if not c.trace:
        return ""
    w, h, pad = 420, 200, 34
    n = max(i for i, _, _ in c.trace)
    top = max(s for _, _, s in c.trace)
    low = min(s for _, _, s in c.trace)
    span = max(1, top - low)

    def xy(i: int, s: int) -> tuple[float, float]:
        return (pad + (w - 2 * pad) * (i - 1) / max(1, n - 1),
                h - pad - (h - 2 * pad) * (s - low) / span)

    dots = "".join(
        f"<circle cx='{x:.1f}' cy='{y:.1f}' r='4' fill='{SLAVE_COLOURS.get(sl, '#000')}'>"
        f"<title>packet {i} via {html.escape(sl)}: seq {s}</title></circle>"
        for i, sl, s in c.trace for x, y in [xy(i, s)])
    keys = "".join(f"<text x='{pad + 60 * k}' y='14' fill='{SLAVE_COLOURS[sl]}'>● {sl}</text>"
                   for k, sl in enumerate(sorted({t[1] for t in c.trace})))
    return (f"<figure><svg class='plot' width='{w}' height='{h}' role='img' "
            f"aria-label='{html.escape(title)}'>"
            f"<rect x='0' y='0' width='{w}' height='{h}' fill='white' stroke='#999'/>"
            f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#333'/>"
            f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{h - pad}' stroke='#333'/>"
            f"<text x='{w / 2 - 40}' y='{h - 8}'>packet number</text>"
            f"<text x='2' y='{pad - 6}'>seq</text>"
            f"<text x='{pad - 4}' y='{h - pad + 14}' text-anchor='end'>{low}</text>"
            f"<text x='{pad - 4}' y='{pad + 4}' text-anchor='end'>{top}</text>"
            f"{keys}{dots}</svg><figcaption>{html.escape(title)}</figcaption></figure>")


def page(report: Report) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<title>xfrmd lag-report</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:1100px}",
             "table{border-collapse:collapse;margin:.5em 0 1.5em;table-layout:fixed;width:100%}",
             "th:first-child{width:16%}",
             "td,th{border:1px solid #999;padding:4px 8px;font-size:13px;vertical-align:top}",
             "td small{color:#333}.tree{font-family:monospace;font-size:13px}",
             "figure{display:inline-block;margin:0 1em 1em 0}pre{white-space:pre-wrap}",
             "</style></head><body>",
             "<h1>LAG IPsec offload: the review's scenarios</h1>",
             f"<p>{html.escape(SETUP)}. Made by <code>xfrmd lag-report --html FILE</code>; "
             "each cell is one fresh emulated kernel.</p>",
             f"<p>{html.escape(LEGEND)}.</p>",
             "<p>Verdicts: <b>ok</b>; <b>UNSAFE</b> (a duplicate sequence number on the wire, "
             "an accepted replay, a lifetime not enforced); <b>black-holed</b> (traffic stops "
             "until the key manager acts); <b>refused</b> (the bond or a lower driver did not "
             "admit the SAs and policies; the error is shown).</p>"]
    for s in SCENARIOS:
        parts.append(f"<h2>{html.escape(s.key)}: {html.escape(s.title)}</h2>")
        parts.append("<table><tr><th>pairing</th>"
                     + "".join(f"<th>{html.escape(m)}</th>" for m in MODELS) + "</tr>")
        for p in PAIRINGS:
            row = []
            for m in MODELS:
                c = report.cell(s.key, p.name, m)
                counts = ("" if c.verdict == REFUSED or s.key == "S7" else
                          f"{c.sent}/{c.accepted}/{c.replay}/{c.dup}/{c.blackholed}<br>")
                row.append(f"<td style='background:{COLOURS.get(c.verdict, '#fff')}'>"
                           f"<b>{html.escape(c.verdict)}</b><br>{counts}"
                           f"<small>{html.escape(c.note)}</small></td>")
            parts.append(f"<tr><th>{html.escape(p.title)}</th>{''.join(row)}</tr>")
        parts.append("</table>")
    parts.append("<h2>Where each SA lives, and each slave's sequence numbers</h2>")
    for p in PAIRINGS:
        for m in MODELS:
            adm = report.cell("S7", p.name, m)
            if adm.verdict == REFUSED:
                continue
            parts.append(f"<h3>{html.escape(p.title)}, model {html.escape(m)}</h3>")
            parts.append(_tree(adm))
            for key, what in (("S1", "S1 spray"), ("flap", "slave flap")):
                parts.append(_plot(report.cell(key, p.name, m), f"{what}: {p.title}, {m}"))
    parts.append("<h2>Set-up commands of one cell</h2><pre>")
    parts.append(html.escape("\n".join(report.cell("S1", PAIRINGS[0].name, "replicated").setup)))
    parts.append("</pre></body></html>")
    return "\n".join(parts) + "\n"


def write_html(report: Report, path: str) -> None:
    with open(path, "w") as f:
        f.write(page(report))


def summary(report: Report) -> dict[str, Any]:
    """Verdict counts (for a one-line answer and for tests)."""
    out: dict[str, Any] = {}
    for c in report.cells:
        out[c.verdict] = out.get(c.verdict, 0) + 1
    return out
