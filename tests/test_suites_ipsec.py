"""ipsec.c's parallel mode (`ipsec N`, xfrmd/suites/kselftest.py): why its compat tests race
with each other, and how `xfrmd suites kselftest` judges a run."""
from __future__ import annotations

import os
import time

from netlink_codec import xfrm as X
from tests.differential.test_policy_diff import TMPL1, add, info, m
from tests.sad_helpers import AEAD, M, Nl, messages, newsa, usersa_info
from xfrmd.suites import kselftest

G = X.XfrmNlGrp
HARD_IN_POLEXPIRE = 16 + 168     # nlmsghdr + xfrm_userpolicy_info: where its `hard` is


def test_expire_listeners_of_one_namespace_read_each_others_expires(kernel):
    """The interleaving of ipsec.c's "expire state" and "expire policy" tests when two of its
    children run them at once in their shared namespace: each binds an XFRMNLGRP_EXPIRE
    listener, then asks for its expire. Linux multicasts both to both listeners
    (xfrm_exp_state_notify, xfrm_exp_policy_notify), so the policy test's listener reads the
    state's XFRM_MSG_EXPIRE first and finds 0 where a polexpire has `hard` — the selftest's
    "expire.hard is not set: 0"."""
    state_test, policy_test = Nl(kernel, pid=101), Nl(kernel, pid=102)
    state_test.ok(newsa(AEAD))
    policy_test.ok(add(TMPL1))
    policy_listener = Nl(kernel, groups=(G.EXPIRE,), pid=202)
    state_listener = Nl(kernel, groups=(G.EXPIRE,), pid=201)
    state_test.ok(m(M.EXPIRE, usersa_info() + bytes([0xFF]) + bytes(7)))
    policy_test.ok(m(M.POLEXPIRE, info() + bytes([0xFF]) + bytes(7)))
    got = [[msg for d in listener.recv_all() for msg in messages(d)]
           for listener in (state_listener, policy_listener)]
    assert [[t for t, *_ in one] for one in got] == [[M.EXPIRE, M.POLEXPIRE]] * 2
    first_of_policy_listener = got[1][0][4]
    assert first_of_policy_listener[HARD_IN_POLEXPIRE] == 0
    assert got[1][1][4][HARD_IN_POLEXPIRE] == 1


COMPAT = ["alloc spi", "monitor acquire", "expire state", "expire policy", "spdinfo attributes"]
FAKE = r"""#!/bin/sh
# stands in for ipsec.c: TAP lines as it prints them; $FAKE_SINGLE / $FAKE_PARALLEL name the
# test that fails in the single-process / parallel run
echo "1..105"
if [ -n "$1" ]; then fail="$FAKE_PARALLEL"; else fail="$FAKE_SINGLE"; fi
n=0
for t in "alloc spi" "monitor acquire" "expire state" "expire policy" "spdinfo attributes"; do
  n=$((n+1))
  if [ "$t" = "$fail" ]; then r="not ok"; else r=ok; fi
  echo "$r $n  $t: [51, 'digest_null', '', '', '', 0]"
done
if [ -z "$1" ]; then
  echo "ok 6  create tunnel: [51, 'hmac(md5)', '', '', '', 0]"
  sleep "${FAKE_SLEEP:-60}"                  # the tunnel tests: about 17 minutes
  exit 0
fi
while [ $n -lt 105 ]; do
  n=$((n+1))
  if [ "$n" = "$FAKE_TUNNEL" ]; then r="not ok"; else r=ok; fi
  echo "$r $n  create tunnel: [50, 'hmac(sha1)', 'cbc(aes)', '', '', 0]"
done
"""


def fake_selftests(tmp_path) -> str:
    """A selftests folder whose built ipsec is the script above (build_ipsec finds it)."""
    os.makedirs(tmp_path / "selftests" / "net")
    exe = tmp_path / "ipsec"
    exe.write_text(FAKE)
    exe.chmod(0o755)
    return str(tmp_path / "selftests")


def test_parallel_run_takes_the_compat_verdicts_from_the_single_process_run(tmp_path,
                                                                          monkeypatch):
    selftests = fake_selftests(tmp_path)
    monkeypatch.setenv("FAKE_PARALLEL", "expire policy")      # the race of `ipsec N`
    t = time.monotonic()
    r = kselftest.run_ipsec(selftests, processes=8)
    assert (r.status, r.detail) == ("PASS", "ok:105 not-ok:0")
    assert time.monotonic() - t < 40          # the single-process run stopped after 5 lines


def test_a_failure_where_it_cannot_race_fails_the_run(tmp_path, monkeypatch):
    selftests = fake_selftests(tmp_path)
    monkeypatch.setenv("FAKE_SINGLE", "expire state")
    r = kselftest.run_ipsec(selftests, processes=8)
    assert (r.status, r.detail) == ("FAIL", "ok:104 not-ok:1")
    monkeypatch.delenv("FAKE_SINGLE")
    monkeypatch.setenv("FAKE_TUNNEL", "77")
    r = kselftest.run_ipsec(selftests, processes=8)
    assert (r.status, r.detail) == ("FAIL", "ok:104 not-ok:1")


def test_the_single_process_run_is_judged_on_its_own(tmp_path, monkeypatch):
    """--ipsec-processes 1: the whole of `ipsec`, whose every line counts (the stand-in
    stops after its sixth)."""
    selftests = fake_selftests(tmp_path)
    monkeypatch.setenv("FAKE_SLEEP", "0")
    r = kselftest.run_ipsec(selftests, processes=1)
    assert (r.status, r.detail) == ("FAIL", "6 of its 105 tests reported")


def test_a_run_that_reports_fewer_tests_than_its_plan_fails():
    lines = ["1..105"] + [f"ok {n}  create tunnel: []" for n in range(1, 105)]
    r = kselftest._ipsec_result(lines, 1.0)
    assert (r.status, r.detail) == ("FAIL", "104 of its 105 tests reported")
