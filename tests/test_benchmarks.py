"""`python3 -m benchmarks --quick`, the CI mode of the benchmarks: it runs in under 60 s,
prints every figure of the performance table (docs/performance.md) with its reference, ratio
and goal, and exits 0 unless a figure regressed by more than 50 % against its same-run
reference (benchmarks/baseline.json)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netlink_codec import cext

ROOT = Path(__file__).resolve().parent.parent

# the figures every run prints (the ip ones need root, ip and a C compiler: CI has them)
ALWAYS = ["codec_newsa_aead_offload_dir_decode_encode", "codec_newpolicy_one_tmpl_decode_encode",
          "esp_gcm128_1400B_encrypt_decrypt", "xmit_software_path_1400B",
          "newsa_decode_validate_insert_ack", "newpolicy_decode_validate_insert_ack",
          "rss_100k_sas_plus_100k_policies", "trace_tap_per_datagram",
          "gc_longest_pause_loading_10k_sas", "lag_report_full_matrix",
          "bond_xmit_deliver_packets_per_s", "xfrmd_ctl_call_cpu",
          "charon6_child_sa_mix_packet_offload"]
WITH_IP = ["ip_batch_2000_policy_adds", "ip_policy_list_2000", "xfrmd_run_true_startup",
           "ip_script_60_commands", "server_cpu_per_connection"]

# the baseline section a run uses: a pure-Python run (XFRMD_PURE_PYTHON=1) has its own
MODE = "quick-pure" if cext.pure_python() else "quick"


def _run(*args: str, env=None) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=180)
    return p, time.monotonic() - t0


@pytest.mark.slow      # ≈ 15 s: the whole quick mode, as CI runs it
@pytest.mark.bench
def test_quick_mode_prints_every_figure_and_passes():
    # its wall time (about 15 s quiet) is the benchmark's own figure, not a test assertion
    p, took = _run("--quick")
    assert p.returncode == 0, p.stdout + p.stderr
    names = {line.split()[0] for line in p.stdout.splitlines()[1:] if line and line[0] != "#"}
    want = ALWAYS[:]
    if os.environ.get("CI") or (os.geteuid() == 0 and shutil.which("ip")
                                and (shutil.which("gcc") or shutil.which("cc"))):
        want += WITH_IP
    assert not [n for n in want if n not in names], p.stdout
    # every figure with a same-run reference is gated: it has a baseline ratio
    assert "[no baseline" not in p.stdout, p.stdout
    header = p.stdout.splitlines()[0].split()
    assert header[:7] == ["figure", "value", "unit", "reference", "ratio", "goal", "bar"]


@pytest.mark.bench
def test_a_regression_of_more_than_half_fails_quick_mode(tmp_path):
    """A baseline the figures cannot meet makes --quick exit 1 naming the figure (after the
    second try); the same baseline halved (a faster past) does not."""
    from benchmarks.__main__ import regressed
    # the decision itself, on rows: a time ratio 1.5× the baseline's, a throughput 1/1.5
    assert regressed({"gate": "lower", "ratio": 1.51}, 1.0)
    assert not regressed({"gate": "lower", "ratio": 1.49}, 1.0)
    assert regressed({"gate": "higher", "ratio": 0.33}, 0.5)
    assert not regressed({"gate": "higher", "ratio": 0.34}, 0.5)
    # end to end on the fast module: an unreachable baseline fails, naming the figure
    base = json.loads((ROOT / "benchmarks" / "baseline.json").read_text())
    fake = tmp_path / "baseline.json"
    fake.write_text(json.dumps({MODE: {"xmit_software_path_1400B": 1000.0}}))
    env = dict(os.environ, XFRMD_BENCH_BASELINE=str(fake))
    p, _ = _run("--quick", "esp", env=env)
    assert p.returncode == 1 and "xmit_software_path_1400B" in p.stderr, p.stdout + p.stderr
    assert "xmit_software_path_1400B" in base[MODE]


@pytest.mark.bench
def test_the_lag_figures_are_gated(tmp_path):
    """bench_lag's two figures have baseline ratios, so --quick gates them: a baseline
    without them prints them as not gated, one they cannot meet fails naming them."""
    base = json.loads((ROOT / "benchmarks" / "baseline.json").read_text())[MODE]
    assert {"lag_report_full_matrix", "bond_xmit_deliver_packets_per_s"} <= set(base)
    p, _ = _run("--quick", "bench_lag")
    assert p.returncode == 0 and "[no baseline" not in p.stdout, p.stdout + p.stderr
    fake = tmp_path / "baseline.json"
    fake.write_text(json.dumps({MODE: {"lag_report_full_matrix": 0.001,
                                          "bond_xmit_deliver_packets_per_s": 1000.0}}))
    p, _ = _run("--quick", "bench_lag", env=dict(os.environ, XFRMD_BENCH_BASELINE=str(fake)))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "lag_report_full_matrix" in p.stderr and "bond_xmit_deliver_packets_per_s" in p.stderr
    fake.write_text(json.dumps({MODE: {}}))
    p, _ = _run("--quick", "bench_lag", env=dict(os.environ, XFRMD_BENCH_BASELINE=str(fake)))
    assert p.stdout.count("[no baseline: not gated]") == 2, p.stdout
