"""``xfrmd lag-report``: the LAG review's scenarios on every model × pairing, through the
command line (JSON asserted cell by cell, the text matrix) and as an HTML page rendered by
headless Chromium (its screenshot must show the plots; its DOM the bond trees)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from xfrmd.lagreport.report import run_report
from xfrmd.lagreport.lab import MODELS, PAIRINGS, Lab
from xfrmd.lagreport.scenarios import SCENARIOS, Cell, esn_advance

from .conftest import require

XFRMD = [sys.executable, "-m", "xfrmd.cli"]

# (scenario, pairing, model) → (verdict, sent, accepted, replay, dup, black-holed)
EXPECTED = {
    # S1
    ('S1', 'mlx5-pair', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S1', 'mlx5-pair', 'replicated'): ('UNSAFE', 12, 6, 6, 6, 0),
    ('S1', 'mlx5-pair', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S1', 'soe-1-engine', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S1', 'soe-1-engine', 'replicated'): ('ok', 12, 12, 0, 0, 0),
    ('S1', 'soe-1-engine', 'shared'): ('ok', 12, 12, 0, 0, 0),
    ('S1', 'soe-2-engines', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S1', 'soe-2-engines', 'replicated'): ('UNSAFE', 12, 6, 6, 6, 0),
    ('S1', 'soe-2-engines', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S1', 'mixed', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S1', 'mixed', 'replicated'): ('UNSAFE', 12, 6, 6, 6, 0),
    ('S1', 'mixed', 'shared'): ('refused', 0, 0, 0, 0, 0),
    # S2
    ('S2', 'mlx5-pair', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S2', 'mlx5-pair', 'replicated'): ('UNSAFE', 40, 20, 20, 20, 0),
    ('S2', 'mlx5-pair', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S2', 'soe-1-engine', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S2', 'soe-1-engine', 'replicated'): ('ok', 40, 40, 0, 0, 0),
    ('S2', 'soe-1-engine', 'shared'): ('black-holed', 20, 20, 0, 0, 20),
    ('S2', 'soe-2-engines', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S2', 'soe-2-engines', 'replicated'): ('UNSAFE', 40, 20, 20, 20, 0),
    ('S2', 'soe-2-engines', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S2', 'mixed', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S2', 'mixed', 'replicated'): ('UNSAFE', 40, 20, 20, 20, 0),
    ('S2', 'mixed', 'shared'): ('refused', 0, 0, 0, 0, 0),
    # S3
    ('S3', 'mlx5-pair', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S3', 'mlx5-pair', 'replicated'): ('UNSAFE', 12, 11, 1, 2, 0),
    ('S3', 'mlx5-pair', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S3', 'soe-1-engine', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S3', 'soe-1-engine', 'replicated'): ('ok', 12, 10, 2, 2, 0),
    ('S3', 'soe-1-engine', 'shared'): ('ok', 12, 10, 2, 2, 0),
    ('S3', 'soe-2-engines', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S3', 'soe-2-engines', 'replicated'): ('UNSAFE', 12, 11, 1, 2, 0),
    ('S3', 'soe-2-engines', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S3', 'mixed', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S3', 'mixed', 'replicated'): ('UNSAFE', 12, 11, 1, 2, 0),
    ('S3', 'mixed', 'shared'): ('refused', 0, 0, 0, 0, 0),
    # flap
    ('flap', 'mlx5-pair', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('flap', 'mlx5-pair', 'replicated'): ('UNSAFE', 30, 10, 20, 20, 0),
    ('flap', 'mlx5-pair', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('flap', 'soe-1-engine', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('flap', 'soe-1-engine', 'replicated'): ('ok', 30, 30, 0, 0, 0),
    ('flap', 'soe-1-engine', 'shared'): ('black-holed', 10, 10, 0, 0, 20),
    ('flap', 'soe-2-engines', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('flap', 'soe-2-engines', 'replicated'): ('UNSAFE', 30, 10, 20, 20, 0),
    ('flap', 'soe-2-engines', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('flap', 'mixed', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('flap', 'mixed', 'replicated'): ('UNSAFE', 30, 10, 20, 20, 0),
    ('flap', 'mixed', 'shared'): ('refused', 0, 0, 0, 0, 0),
    # esn
    ('esn', 'mlx5-pair', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'mlx5-pair', 'replicated'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'mlx5-pair', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'soe-1-engine', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'soe-1-engine', 'replicated'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'soe-1-engine', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'soe-2-engines', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'soe-2-engines', 'replicated'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'soe-2-engines', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'mixed', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'mixed', 'replicated'): ('refused', 0, 0, 0, 0, 0),
    ('esn', 'mixed', 'shared'): ('refused', 0, 0, 0, 0, 0),
    # S5
    ('S5', 'mlx5-pair', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S5', 'mlx5-pair', 'replicated'): ('UNSAFE', 20, 10, 10, 10, 0),
    ('S5', 'mlx5-pair', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S5', 'soe-1-engine', 'off'): ('refused', 0, 0, 0, 0, 0),
    # the SOE programs byte/packet limits into its SA (OpenW1700k-test fbfe8f9) instead of
    # refusing them: the cells run, and show the RFC model's unenforced hard limit
    ('S5', 'soe-1-engine', 'replicated'): ('UNSAFE', 20, 20, 0, 0, 0),
    ('S5', 'soe-1-engine', 'shared'): ('ok', 10, 10, 0, 0, 0),
    ('S5', 'soe-2-engines', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S5', 'soe-2-engines', 'replicated'): ('UNSAFE', 20, 10, 10, 10, 0),
    ('S5', 'soe-2-engines', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S5', 'mixed', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S5', 'mixed', 'replicated'): ('UNSAFE', 20, 10, 10, 10, 0),
    ('S5', 'mixed', 'shared'): ('refused', 0, 0, 0, 0, 0),
    # S7
    ('S7', 'mlx5-pair', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S7', 'mlx5-pair', 'replicated'): ('ok', 0, 0, 0, 0, 0),
    ('S7', 'mlx5-pair', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S7', 'soe-1-engine', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S7', 'soe-1-engine', 'replicated'): ('ok', 0, 0, 0, 0, 0),
    ('S7', 'soe-1-engine', 'shared'): ('ok', 0, 0, 0, 0, 0),
    ('S7', 'soe-2-engines', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S7', 'soe-2-engines', 'replicated'): ('ok', 0, 0, 0, 0, 0),
    ('S7', 'soe-2-engines', 'shared'): ('refused', 0, 0, 0, 0, 0),
    ('S7', 'mixed', 'off'): ('refused', 0, 0, 0, 0, 0),
    ('S7', 'mixed', 'replicated'): ('ok', 0, 0, 0, 0, 0),
    ('S7', 'mixed', 'shared'): ('refused', 0, 0, 0, 0, 0),
}

REFUSALS = {
    ("S1", "mlx5-pair", "off"): "Error: Policy offload is not supported.",
    ("S1", "mlx5-pair", "shared"): "Error: bonding: Bond IPsec offload is disabled.",
    ("esn", "soe-1-engine", "off"): "Error: airoha_eth: SOE ESN is not supported yet.",
    ("esn", "mlx5-pair", "replicated"): "Error: bonding: LAG does not support XFRM ESN offload.",
    ("S5", "soe-2-engines", "shared"): "Error: bonding: Bond IPsec offload is disabled.",
}


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """One `lag-report --json --html FILE` for the module: the JSON on stdout, the page."""
    page = tmp_path_factory.mktemp("lag-report") / "report.html"
    p = subprocess.run(XFRMD + ["lag-report", "--json", "--html", str(page)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [f"lag-report: {len(EXPECTED)} cells",
                                     f"lag-report: wrote {page}"]
    return json.loads(p.stdout), page


@pytest.fixture(scope="module")
def report_json(report_run):
    return report_run[0]


def test_the_matrix_cell_by_cell(report_json):
    got = {(c["scenario"], c["pairing"], c["model"]):
           (c["verdict"], c["sent"], c["accepted"], c["replay"], c["dup"], c["blackholed"])
           for c in report_json["cells"]}
    assert len(got) == len(SCENARIOS) * len(PAIRINGS) * len(MODELS) == 84
    for key, want in EXPECTED.items():
        assert got[key] == want, key


def test_refusals_are_the_drivers_own_words(report_json):
    notes = {(c["scenario"], c["pairing"], c["model"]): c["note"] for c in report_json["cells"]}
    for key, text in REFUSALS.items():
        assert notes[key] == text, key


def test_unsafe_cells_say_why(report_json):
    notes = {(c["scenario"], c["pairing"], c["model"]): c["note"] for c in report_json["cells"]}
    assert notes[("S1", "mlx5-pair", "replicated")] == (
        "6 sequence numbers used twice (one counter per slave); the peer dropped 6 as replays")
    assert notes[("S2", "mlx5-pair", "replicated")] == "the new slave s1 restarted at sequence 1"
    assert notes[("S3", "mixed", "replicated")] == (
        "the re-injected packet was accepted 1 more time(s): one replay window per slave")
    assert notes[("S5", "mlx5-pair", "replicated")] == (
        "10 packets after the hard limit, EXPIREs sent: none")
    assert notes[("S7", "soe-1-engine", "shared")] == (
        "one shared context on s0, valid on s0, s1")
    assert notes[("S2", "soe-1-engine", "shared")].startswith(
        "after s0 went down nothing was sent: xfrm_state_find failed for reqid 1")


def test_the_text_matrix():
    p = subprocess.run(XFRMD + ["lag-report"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "xfrmd lag-report: 7 scenarios × 4 pairings × 3 LAG models"
    i = lines.index("S1  spray: per-slave sequence counters")
    assert lines[i + 1].split() == ["off", "replicated", "shared"]
    assert lines[i + 2].split() == ["mlx5-like", "pair", "(converted)", "refused", "[1]",
                                    "UNSAFE", "12/6/6/6/0", "refused", "[2]"]
    assert lines[i + 3].split() == ["SOE,", "one", "engine", "refused", "[1]",
                                    "ok", "12/12/0/0/0", "ok", "12/12/0/0/0"]
    j = lines.index("refusals (the first set-up line the DUT refused, as ip printed it):")
    assert lines[j + 1] == "  [1] Error: Policy offload is not supported."
    assert lines[j + 2] == "  [2] Error: bonding: Bond IPsec offload is disabled."


def test_the_plot_data_follows_each_slaves_counter():
    """S1 spray on two mlx5-like replicas: each slave numbers from 1; on SOE ports of one
    engine the two slaves share one counter."""
    r = run_report()
    mlx5 = r.cell("S1", "mlx5-pair", "replicated").trace
    assert [(sl, s) for _, sl, s in mlx5[:4]] == [("s0", 1), ("s1", 1), ("s0", 2), ("s1", 2)]
    soe = r.cell("S1", "soe-1-engine", "replicated").trace
    assert [s for _, _, s in soe] == list(range(1, 13))
    assert {sl for _, sl, _ in soe} == {"s0", "s1"}


@pytest.mark.parametrize("model, mode", [("off", "active-backup"), ("replicated", "802.3ad")])
def test_the_esn_scenario_where_the_bond_admits_esn(model, mode):
    """Every cell of the ESN row is refused, so the scenario's traffic runs only here: crypto
    offload on the same bench (the stack's one window), the peer's 32 packets across 2^32
    alternating between the slaves, then one from before the wrap again: a replay."""
    lab = Lab(next(p for p in PAIRINGS if p.name == "mlx5-pair"), model, esn=True, mode=mode,
              offload="crypto")
    assert lab.admitted, lab.refusal
    cell = Cell("esn", "mlx5-pair", model)
    esn_advance(lab, cell)
    assert (cell.verdict, cell.sent, cell.accepted, cell.replay, cell.dup, cell.blackholed,
            cell.note) == ("ok", 33, 32, 1, 1, 0, "")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    require(exe is not None, "chromium is not installed (tools/test-all.sh installs it)")
    return exe


def _has_colour(im, rgb, tolerance=12, at_least=200) -> bool:
    """At least ``at_least`` pixels within ``tolerance`` of ``rgb`` (anti-aliasing)."""
    n = sum(count for count, px in im.getcolors(1 << 24)
            if all(abs(a - b) <= tolerance for a, b in zip(px, rgb)))
    return n >= at_least


def test_the_html_page_in_headless_chromium(tmp_path, report_run):
    from PIL import Image
    exe = _chromium()
    page = report_run[1]
    shot = tmp_path / "report.png"
    # one browser start: the DOM on stdout and the screenshot
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1200,6000", f"--screenshot={shot}", "--dump-dom",
                        page.as_uri()], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    dom = p.stdout
    # the bond → slave → hardware context tree of each admitted pairing
    assert dom.count("<ul class=\"tree\">") == 5
    assert "s0: the one hardware context (handle 1), valid on s0, s1" in dom
    # the contexts live in the drivers: one per mlx5-like port, one per SOE engine slot
    assert "s1: replica, handle 1, hardware context s1 sa 1 (per port)" in dom
    assert ("s1: replica, handle 1, hardware context soe0 slot 1 (per engine, shared by s0, s1)"
            in dom)
    assert dom.count("<svg class=\"plot\"") == 10
    im = Image.open(shot).convert("RGB").resize((600, 3000))
    assert _has_colour(im, (0x1F, 0x6F, 0xD1)), "no s0 dots (blue) in the plots"
    assert _has_colour(im, (0xD9, 0x48, 0x0F)), "no s1 dots (orange) in the plots"
    assert _has_colour(im, (0xF6, 0xC6, 0xC6), at_least=2000), "no UNSAFE cells (red)"
    assert _has_colour(im, (0xD8, 0xF0, 0xD8), at_least=2000), "no ok cells (green)"
