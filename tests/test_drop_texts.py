"""Every drop on the emulated data path says what happened and what to change, naming the SA
by SPI and reqid, the policy by its selector and the device by name — as `xfrmd ctl xmit`
(and its `--deliver` input side) prints it. Run in-process: the CLI's own functions against
one server thread; the namespaces are set up with `xfrmd replay`."""
from __future__ import annotations

import pytest

from xfrmd.cli import main as xfrmd

KEY = "0x" + "11" * 20
OTHER_KEY = "0x" + "22" * 20
GCM = "aead 'rfc4106(gcm(aes))' {key} 128"


def _replay(server, tmp_path, capsys, text: str, netns: str = "default") -> None:
    script = tmp_path / "s.ip"
    script.write_text(text.replace("{gcm}", GCM).format(key=KEY, other=OTHER_KEY))
    assert xfrmd(["replay", str(script), "--socket", server.path, "--netns", netns,
                  "--stop-on-error"]) == 0, capsys.readouterr()
    capsys.readouterr()


def _ctl(server, capsys, *verb) -> str:
    assert xfrmd(["ctl", "--socket", server.path, "--netns", "default", *verb]) == 0
    return capsys.readouterr().out


def _first(out: str) -> str:
    return out.splitlines()[0]


def test_no_route_says_from_where_to_where(xfrmd_server, capsys):
    _ctl(xfrmd_server, capsys, "netns", "add", "blue")
    out = _ctl(xfrmd_server, capsys, "xmit", "--netns", "blue", "192.0.2.1", "192.0.2.9")
    assert _first(out) == (
        "1 dropped: no policy; no route: no route from 192.0.2.1 to 192.0.2.9 in blue: add a "
        "route (ip route add 192.0.2.9 dev …) or an address on a link that is up "
        "(errno ENETUNREACH)")


def test_no_sa_names_the_template_and_what_to_add(xfrmd_server, tmp_path, capsys):
    _replay(xfrmd_server, tmp_path, capsys,
            "xfrm policy add src 192.0.2.1/32 dst 192.0.2.7/32 dir out tmpl src 192.0.2.1 "
            "dst 192.0.2.7 proto esp reqid 5 mode transport\n")
    assert _first(_ctl(xfrmd_server, capsys, "xmit", "192.0.2.1", "192.0.2.7")) == (
        "1 dropped: policy out index 1; XfrmOutPolError: no SA for reqid 5 (template src "
        "192.0.2.1 dst 192.0.2.7 proto esp reqid 5 mode transport) and no key manager listens: "
        "add the SA (ip xfrm state add … reqid 5) or start the IKE daemon first (errno ESRCH)")


@pytest.mark.parametrize("sa_extra, count, why", [
    (" limit packet-hard 2", 3,
     "XfrmOutStateExpired: SA 0x300 (reqid 6) reached its hard lifetime (packet-hard 2): the key "
     "manager must rekey before the hard limit (or raise it: `limit "
     "time-hard|byte-hard|packet-hard`) (errno EINVAL)"),
    (" replay-oseq 0xffffffff", 1,
     "XfrmOutStateSeqError: SA 0x300 (reqid 6): its 32-bit sequence number would wrap (no ESN, "
     "no oseq-may-wrap): the key manager must rekey before 2^32 packets, or add the SA with "
     "`flag esn` (or `extra-flag oseq-may-wrap`) (errno EOVERFLOW)"),
    (" dir in", 1,
     "XfrmOutStateDirError: SA 0x300 (reqid 6) is dir in, but the out policy's template finds "
     "it: add the outbound SA with dir out (or no dir) (errno EINVAL)"),
], ids=["hard-lifetime", "sequence-wrap", "dir-in"])
def test_an_sa_drop_names_the_sa_and_the_fix(xfrmd_server, tmp_path, capsys, sa_extra, count,
                                             why):
    _replay(xfrmd_server, tmp_path, capsys,
            "xfrm state add src 192.0.2.1 dst 192.0.2.8 proto esp spi 0x300 reqid 6 mode "
            "transport {gcm}" + sa_extra + "\n"
            "xfrm policy add src 192.0.2.1/32 dst 192.0.2.8/32 dir out tmpl src 192.0.2.1 "
            "dst 192.0.2.8 proto esp reqid 6 mode transport\n")
    out = _ctl(xfrmd_server, capsys, "xmit", "192.0.2.1", "192.0.2.8", "count", str(count))
    dropped = [ln for ln in out.splitlines() if " dropped: " in ln]
    assert len(dropped) == 1 and dropped[0].endswith(why), out


def test_a_packet_offload_drop_names_the_sa_the_device_and_the_fix(xfrmd_server, tmp_path,
                                                                   capsys):
    _replay(xfrmd_server, tmp_path, capsys,
            "link set soe2 up\n"
            "xfrm state add src 203.0.113.129 dst 203.0.113.130 proto esp spi 0x201 reqid 2 mode "
            "tunnel {gcm} offload packet dev soe2 dir out\n"
            "xfrm policy add src 203.0.113.129/32 dst 203.0.113.131/32 dir out tmpl src "
            "203.0.113.129 dst 203.0.113.130 proto esp reqid 2 mode tunnel offload packet dev "
            "soe2\n")
    out = _ctl(xfrmd_server, capsys, "xmit", "203.0.113.129", "203.0.113.131", "size", "1480")
    assert _first(out).endswith(
        "XfrmOutError: packet offload: 1508 bytes exceed the state's MTU 1446: SA 0x201 (reqid "
        "2) is packet-offloaded on soe2 and a packet-offloaded SA has no software fallback; "
        "send smaller packets, or raise soe2's mtu (ip link set soe2 mtu …) (errno "
        "EHOSTUNREACH)"), out
    assert "packet-offload dev soe2" in _first(
        _ctl(xfrmd_server, capsys, "xmit", "203.0.113.129", "203.0.113.131"))


RIGHT = """\
link add d0 type dummy
link set d0 up
addr add 198.51.100.2/24 dev d0
"""
LEFT_SA = ("xfrm state add src 198.51.100.1 dst 198.51.100.2 proto esp spi 0x1000 reqid 1 mode "
           "tunnel replay-window 32 " + GCM + "\n")
LEFT = LEFT_SA + ("xfrm policy add src 198.51.100.1/32 dst 198.51.100.2/32 dir out tmpl src "
                  "198.51.100.1 dst 198.51.100.2 proto esp reqid 1 mode tunnel\n")
IN_POL = ("xfrm policy add src 198.51.100.1/32 dst 198.51.100.2/32 dir in tmpl src 198.51.100.1 "
          "dst 198.51.100.2 proto esp reqid {reqid} mode tunnel\n")


@pytest.mark.parametrize("right, why", [
    ("", "XfrmInNoStates: no SA for spi 0x00001000 to 198.51.100.2 in right: add the inbound SA "
         "(ip xfrm state add src 198.51.100.1 dst 198.51.100.2 proto esp spi 0x1000 …) with the "
         "sender's keys"),
    (LEFT_SA.replace("{key}", "{other}"),
     "XfrmInStateProtoError: ICV mismatch (integrity failed) on SA 0x1000 (reqid 1): the "
     "sender's key, algorithm or ESN setting differs from this SA's"),
    (LEFT_SA, "XfrmInNoPols: tunnel-mode SA but no IN policy: SA 0x1000 (reqid 1) decrypted the "
              "packet, but no in policy matches src 198.51.100.1/32 dst 198.51.100.2/32 proto "
              "udp; add a dir in policy with a template for this SA"),
    (LEFT_SA + IN_POL.replace("{reqid}", "9"),
     "XfrmInTmplMismatch: IN policy 8 (src 198.51.100.1/32 dst 198.51.100.2/32): no SA matches "
     "template reqid 9: the packet used SA 0x1000 (reqid 1); make the template's reqid, mode "
     "and addresses match the SA (or the template optional: `level use`)"),
    (LEFT_SA + "xfrm policy add src 198.51.100.1/32 dst 198.51.100.2/32 dir in action block\n",
     "XfrmInPolBlock: IN policy 8 blocks: its selector src 198.51.100.1/32 dst "
     "198.51.100.2/32 covers this flow; delete the policy or add it with action allow"),
], ids=["no-sa", "icv", "no-in-policy", "template", "block"])
def test_an_input_drop_says_why_on_the_receiving_side(xfrmd_server, tmp_path, capsys, right,
                                                      why):
    _ctl(xfrmd_server, capsys, "netns", "add", "right")
    _replay(xfrmd_server, tmp_path, capsys, RIGHT + right, netns="right")
    _replay(xfrmd_server, tmp_path, capsys, LEFT)
    out = _ctl(xfrmd_server, capsys, "xmit", "198.51.100.1", "198.51.100.2", "--deliver", "right")
    lines = out.splitlines()
    assert lines[-1] == "right: delivered 0 dropped 1", out
    assert lines[-2].startswith("right: 1 dropped: ") and lines[-2].endswith(why), out


def test_a_destination_that_is_not_local_says_so(xfrmd_server, tmp_path, capsys):
    _ctl(xfrmd_server, capsys, "netns", "add", "right")
    _replay(xfrmd_server, tmp_path, capsys, LEFT)
    out = _ctl(xfrmd_server, capsys, "xmit", "198.51.100.1", "198.51.100.2", "--deliver", "right")
    assert ("198.51.100.2 is not local to right (xfrmd: forwarding is not modelled): add the "
            "address to a link in right or send to one it has") in out


@pytest.mark.parametrize("dev, spi, error", [
    ("nosuch", "0x301", "no offload device 'nosuch': no device of that name in default (xfrmd "
                        "ctl links lists them)"),
    ("dummy0", "0x301", "no offload device 'dummy0': dummy0 has no IPsec offload (xfrmdev_ops); "
                        "use a netdevsim, mlx5-like, airoha-soe port or a bond of them"),
    ("nsim0", "0x999", "no SA with spi 0x999 offloaded to nsim0: add it with `offload "
                       "crypto|packet dev nsim0 dir in|out` (`ip xfrm state` shows which SAs are "
                       "offloaded where)"),
], ids=["no-device", "no-offload", "no-sa"])
def test_offload_traffic_refusals_say_what_to_change(xfrmd_server, tmp_path, capsys, dev, spi,
                                                     error):
    _replay(xfrmd_server, tmp_path, capsys,
            "link set nsim0 up\n"
            "xfrm state add src 203.0.113.1 dst 203.0.113.2 proto esp spi 0x301 reqid 3 mode "
            "transport {gcm} offload dev nsim0 dir out\n")
    assert _ctl(xfrmd_server, capsys, "offload-traffic", "nsim0", "0x301", "3", "300") == (
        "3 packets (300 bytes) through the hardware SA spi 0x301 on nsim0\n")
    assert xfrmd(["ctl", "--socket", xfrmd_server.path, "offload-traffic", dev, spi]) == 1
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == f"xfrmd ctl: {error}\n"
