"""strongSwan charon 5.9.8 ↔ charon with its default ``install_routes = yes``: each charon
adds its rule (``220: from all lookup 220``) and, for the CHILD_SA, a route to the peer's
traffic selector in table 220 (RTM_NEWROUTE, CREATE|REPLACE, proto static, with the source
address and the peer as gateway), after choosing it from a dump of every table. The route must show in each emulated
kernel with `ip route show table 220`, and `ip route get` must go through table 220."""
from __future__ import annotations

import os
import subprocess

from xfrmd.ike import charon
from xfrmd.ike.pair import KernelPair

from .ike_helpers import require_charon, require_root


def _ip(kp, side, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, **kp.env(side))
    return subprocess.run(["ip", *args], env=env, capture_output=True, text=True, timeout=30)


def test_charon_install_routes_puts_its_route_in_table_220_of_each_kernel(tmp_path):
    require_root()
    require_charon()
    with KernelPair() as kp:
        daemons = {}
        try:
            for side in ("left", "right"):
                c = charon.Charon(kp.real, side, str(tmp_path), kp.env(side))
                conf = os.path.join(c.dir, "strongswan.conf")
                text = open(conf).read()
                assert "install_routes = no" in text
                with open(conf, "w") as f:          # charon's default
                    f.write(text.replace("install_routes = no", "install_routes = yes"))
                daemons[side] = c
                c.start()
            r = daemons["left"].initiate()
            assert "initiate completed successfully" in r.stdout, r.stdout
            for side, peer in (("left", "right"), ("right", "left")):
                me, them, dev = kp.real.addr[side], kp.real.addr[peer], kp.real.dev[side]
                rules = _ip(kp, side, "rule", "show").stdout
                assert "220:\tfrom all lookup 220" in rules, rules
                shown = _ip(kp, side, "route", "show", "table", "220")
                assert shown.returncode == 0, shown.stderr
                # charon 5.9.8 names the directly connected peer as its own gateway
                assert shown.stdout == f"{them} via {them} dev {dev} proto static src {me} \n", \
                    (side, shown.stdout, daemons[side].logtext()[-3000:])
                got = _ip(kp, side, "route", "get", them).stdout
                assert got.startswith(f"{them} via {them} dev {dev} table 220 src {me} "), got
        finally:
            for c in daemons.values():
                c.stop()
        # charon took its routes and rules along when it stopped
        for side in ("left", "right"):
            assert _ip(kp, side, "route", "show", "table", "220").stdout == ""
            assert "lookup 220" not in _ip(kp, side, "rule", "show").stdout
