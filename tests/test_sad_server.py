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


def test_real_ip_reads_back_accepted_sas_through_the_shim(tmp_path):
    """Accepted SAs (the real kernel here cannot accept them) read back by the real ip 6.1
    through the shim: what it prints comes from our dump bytes."""
    import shutil
    import subprocess
    import sys

    from .conftest import require
    require(shutil.which("ip") and (shutil.which("gcc") or shutil.which("cc")),
            "needs ip and a C compiler for the shim")
    script = tmp_path / "sa.sh"
    script.write_text(
        "ip xfrm state add src 192.0.2.1 dst 198.51.100.1 proto esp spi 0x1000 reqid 5 mode tunnel "
        "aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f1011121314 128 replay-window 32 "
        "flag esn if_id 7 mark 3 mask 0xff output-mark 9\n"
        "ip xfrm state add src 192.0.2.1 dst 198.51.100.3 proto esp spi 0x1002 mode tunnel enc aes "
        "0x00112233445566778899aabbccddeeff auth sha1 0x0011223344556677889900112233445566778899 "
        "encap espinudp 4500 4500 0.0.0.0 tfcpad 128\n"
        "ip xfrm state add src 192.0.2.1 dst 198.51.100.4 proto comp spi 0x2000 mode tunnel comp deflate\n"
        "ip xfrm state list\nip xfrm state count\n")
    p = subprocess.run([sys.executable, "-m", "xfrmd.cli", "run", "--", "sh", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "\tmark 0x3/0xff output-mark 0x9/0xffffffff\n" in out
    assert "\taead rfc4106(gcm(aes)) 0x0102030405060708090a0b0c0d0e0f1011121314 128\n" in out
    assert "\t replay_window 32, bitmap-length 1\n" in out and "\tif_id 0x7\n" in out
    assert "\tauth-trunc hmac(sha1) 0x0011223344556677889900112233445566778899 96\n" in out
    assert "\tencap type espinudp sport 4500 dport 4500 addr 0.0.0.0\n" in out and "\ttfcpad 128\n" in out
    # IPComp in tunnel mode brings the hidden IPIP state (spi = outer source address)
    assert "\tproto 4 spi 0xc0000201 reqid 0 mode tunnel\n" in out
    assert out.endswith("\t SAD count 4\n")
