"""`xfrmd ctl fault` through `xfrmd run` with real `ip`: what ip prints for a refused request
(the extack text), for an interrupted dump, how long a delayed ACK takes while the server
keeps answering others, the listing in text and JSON, and one line per bad argument."""
from __future__ import annotations

import json
import os
import sys

from .conftest import require_shim, xfrmd_run

SCRIPT = r'''
C="$PY -m xfrmd.cli ctl"
K=0x0102030405060708090a0b0c0d0e0f1011121314
add() { ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi $1 aead 'rfc4106(gcm(aes))' $K 128; }
$C fault XFRM_MSG_NEWSA fail ENOMEM extack "xfrmd fault: out of SA memory"; echo "== $?"
add 1; echo "== $?"
ip xfrm state list | grep -c spi
$C fault RTM_GETLINK dump-intr; echo "== $?"
ip -o link show > /dev/null; echo "== $?"
$C fault XFRM_MSG_NEWSA delay 1 comm ip; echo "== $?"
S=$(date +%s%N)
add 2 &
sleep 0.3; ip xfrm state list | grep -c spi; E1=$(date +%s%N)
wait; echo "== $?"; E2=$(date +%s%N)
echo "$(( (E1 - S) / 1000000 )) $(( (E2 - S) / 1000000 ))" > "$OUT/times"
$C fault XFRM_MSG_NEWSA drop netns elsewhere; echo "== $?"
$C fault list
$C fault list --json > "$OUT/list.json"
$C fault clear 4; echo "== $?"
$C fault bogus drop; echo "== $?"
$C fault XFRM_MSG_NEWSA fail ENOPE; echo "== $?"
$C fault XFRM_MSG_NEWSA delay; echo "== $?"
$C fault XFRM_MSG_NEWSA drop count; echo "== $?"
$C fault XFRM_MSG_NEWSA drop sometimes 2; echo "== $?"
$C fault XFRM_MSG_NEWSA dump-intr; echo "== $?"
$C fault clear --json; echo "== $?"
$C fault clear 9; echo "== $?"
$C fault list
'''

EXPECTED = """\
1: XFRM_MSG_NEWSA fail ENOMEM "xfrmd fault: out of SA memory" remaining 1 hits 0
== 0
== 2
0
2: RTM_GETLINK dump-intr remaining 1 hits 0
== 0
== 0
3: XFRM_MSG_NEWSA delay 1.0 comm ip remaining 1 hits 0
== 0
1
== 0
4: XFRM_MSG_NEWSA drop netns elsewhere remaining 1 hits 0
== 0
1: XFRM_MSG_NEWSA fail ENOMEM "xfrmd fault: out of SA memory" remaining 0 hits 1
2: RTM_GETLINK dump-intr remaining 0 hits 1
3: XFRM_MSG_NEWSA delay 1.0 comm ip remaining 0 hits 1
4: XFRM_MSG_NEWSA drop netns elsewhere remaining 1 hits 0
== 0
== 1
== 1
== 2
== 2
== 2
== 1
{"cleared": 3}
== 0
== 1
"""

EXPECTED_ERR = """\
Error: xfrmd fault: out of SA memory.
Dump was interrupted and may be inconsistent.
xfrmd ctl: fault: unknown message type 'bogus' (XFRM_MSG_… or RTM_… names, or any)
xfrmd ctl: fault: unknown errno 'ENOPE' (a name such as ENOMEM, or a number)
xfrmd ctl: fault: delay needs SECONDS (see `xfrmd ctl help`)
xfrmd ctl: fault: 'count' needs a value (see `xfrmd ctl help`)
xfrmd ctl: fault: unknown keyword 'sometimes' (see `xfrmd ctl help`)
xfrmd ctl: fault: dump-intr needs a dump request type (a GET), not XFRM_MSG_NEWSA
xfrmd ctl: fault: no fault 9
"""


def test_fault_verb_with_ip(tmp_path):
    require_shim("ip")
    p = xfrmd_run(SCRIPT, "bare", env=dict(os.environ, OUT=str(tmp_path), PY=sys.executable),
                  timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == EXPECTED
    assert p.stderr == EXPECTED_ERR
    # the delayed ACK: `ip xfrm state add` waited the second; the server answered the
    # `ip xfrm state list` started 0.3 s in (which already sees the SA) meanwhile
    listed, added = map(int, (tmp_path / "times").read_text().split())
    assert listed < 900 and 1000 <= added < 3000, (listed, added)
    listing = json.loads((tmp_path / "list.json").read_text())
    assert listing[0] == {"id": 1, "type": "XFRM_MSG_NEWSA", "action": "fail", "remaining": 0,
                          "hits": 1, "errno": "ENOMEM", "extack": "xfrmd fault: out of SA memory"}
    assert listing[2]["seconds"] == 1.0 and listing[2]["comm"] == "ip"


def test_pyroute2_and_an_interrupted_or_refused_dump():
    """pyroute2 0.9.7 (xfrmd.pyroute2): an interrupted link dump is returned whole and
    without an error (NetlinkDumpInterrupted is not raised); a refused one raises
    NetlinkError with the errno."""
    from pyroute2.netlink.exceptions import NetlinkError

    from xfrmd.pyroute2 import IPRoute
    from xfrmd.testing import make_kernel, running_server
    with running_server(make_kernel("default")) as h:
        with IPRoute(path=h.path) as ipr:
            normal = [link.get("ifname") for link in ipr.get_links()]
        with h.service() as svc:             # what `xfrmd ctl fault` sends
            svc.query("fault_add", type="RTM_GETLINK", action="dump-intr")
            svc.query("fault_add", type="RTM_GETLINK", action="fail", errno="EBUSY")
        with IPRoute(path=h.path) as ipr:
            assert [link.get("ifname") for link in ipr.get_links()] == normal
            try:
                ipr.get_links()
            except NetlinkError as e:
                assert e.code == 16
            else:
                raise AssertionError("no NetlinkError")
        with h.service() as svc:
            assert [f["hits"] for f in svc.query("fault_list")["faults"]] == [1, 1]
