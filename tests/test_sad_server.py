"""The SAD through the real server and the Python client: requests, errors with extack,
events to a subscribed socket, ``acquire`` and ``clock_advance`` service ops."""
import errno as E

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from xfrmd.client import NetlinkError

from .sad_helpers import AEAD, M, usersa_id, usersa_info


def test_newsa_getsa_and_error_over_the_socket(xfrmd_server):
    with xfrmd_server.netlink(N.NETLINK_XFRM) as nl:
        nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(spi=0x42) + AEAD)
        (reply,) = nl.request(M.GETSA, 0, usersa_id(spi=0x42))
        assert reply.type == M.NEWSA and reply.fixed.id.spi == 0x42
        with pytest.raises(NetlinkError) as e:
            nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(spi=0x43, mode=9) + AEAD)
        assert e.value.errno == E.EINVAL and "Unsupported mode" in str(e.value)


def test_acquire_and_expiry_reach_a_listener(xfrmd_server):
    groups = X.XFRMGRP_ACQUIRE | X.XFRMGRP_EXPIRE
    with xfrmd_server.netlink(N.NETLINK_XFRM, groups=groups) as km, xfrmd_server.service() as svc:
        res = svc.query("acquire", src="10.0.0.1", dst="10.0.1.1", reqid=3)
        assert res["errno"] == 0 and res["acquired"] == [3]
        (acq,) = km.recv_messages()
        assert acq.type == M.ACQUIRE and acq.fixed.seq == 1
        assert svc.query("clock_advance", seconds=30)["errno"] == 0
        (exp,) = km.recv_messages()
        assert exp.type == M.EXPIRE and exp.fixed.hard == 1


def test_ctl_verbs_from_the_command_line(xfrmd_server):
    import os
    import subprocess
    import sys
    env = dict(os.environ, **xfrmd_server.env)
    groups = X.XFRMGRP_ACQUIRE
    with xfrmd_server.netlink(N.NETLINK_XFRM, groups=groups) as km:
        out = subprocess.run([sys.executable, "-c", "from xfrmd.cli import main; main()", "ctl",
                              "acquire", "10.0.0.1", "10.0.1.1", "proto", "tcp", "dport", "22",
                              "reqid", "4"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert '"acquired": [\n    4\n  ]' in out.stdout
        (acq,) = km.recv_messages()
        assert acq.type == M.ACQUIRE and acq.fixed.sel.dport == 22
    out = subprocess.run([sys.executable, "-c", "from xfrmd.cli import main; main()", "ctl",
                          "xfrm-type", "esp", "off"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with xfrmd_server.netlink(N.NETLINK_XFRM) as nl:
        with pytest.raises(NetlinkError) as e:
            nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info() + AEAD)
        assert e.value.errno == E.EPROTONOSUPPORT
