"""Differential, bad input to RTM_NEWLINK / RTM_SETLINK / RTM_DELLINK as raw requests: the
same datagrams on a fresh real namespace and through `xfrmd run` (`bare`), comparing
errno, extack message and extack offset of each answer, then the device list — nothing of a
refused request may be left behind. Covers bad attribute types and lengths, unknown kinds,
duplicate names and indexes, enslaving what cannot be enslaved, a port already in another
master (do_set_master moves it), missing devices and namespaces, and the kinds a kernel may
be built without (dummy, bond, netdevsim: the emulated kernel is built like the running one,
tests/differential/kconfig_host.py; tests/test_rtnl.py covers dummy and bond against the
kernel source too)."""
from __future__ import annotations


from tests.differential.test_rtnl_diff import NL_DUMP, run_client_in_both

CLIENT = NL_DUMP + r'''
import sys
IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_TXQLEN = 3, 4, 10, 18, 13
IFLA_NET_NS_PID, IFLA_ADDRESS = 19, 1
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.bind((0, 0))
s.setsockopt(270, 11, 1)                      # NETLINK_EXT_ACK
seq = 0

def attr(t, data):
    return struct.pack("=HH", 4 + len(data), t) + data + bytes((-len(data)) % 4)

def name(t, n):
    return attr(t, n.encode() + b"\0")

def ifi(index=0, flags=0, change=0):
    return struct.pack("=BxHiII", 0, 0, index, flags, change)

def kind(k, data=b""):
    return attr(IFLA_LINKINFO, name(1, k) + (attr(2, data) if data else b""))

def idx(n):
    d = s_dump()
    return d.get(n, 0)

def s_dump():
    global seq
    seq += 1
    out = {}
    for h in nl_dump(s, struct.pack("=IHHII", 32, 18, 0x301, seq, 0) + ifi()):
        m = bytes.fromhex(h)                  # ifinfomsg, then the attributes
        i = struct.unpack_from("=i", m, 4)[0]
        a = 16
        while a < len(m):
            al, at = struct.unpack_from("=HH", m, a)
            if at == 3:
                out[m[a + 4:a + al].rstrip(b"\0").decode()] = i
            a += (al + 3) & ~3
    return out

def req(t, flags, body):
    global seq
    seq += 1
    s.send(struct.pack("=IHHII", 16 + len(body), t, flags, seq, 0) + body)
    d = s.recv(65536)
    L, T, F = struct.unpack_from("=IHH", d, 0)
    err = struct.unpack_from("=i", d, 16)[0]
    msg, offs, pol = None, None, None
    if F & 0x200:                              # NLM_F_ACK_TLVS
        olen = struct.unpack_from("=I", d, 20)[0] if err else 16
        a = 20 + (olen if err else 16)
        while a + 4 <= L:
            al, at = struct.unpack_from("=HH", d, a)
            if at == 1:
                msg = d[a + 4:a + al].rstrip(b"\0").decode()
            elif at == 2:
                offs = struct.unpack_from("=I", d, a + 4)[0]
            elif at == 4:                      # NLMSGERR_ATTR_POLICY
                pol = d[a + 4:a + al].hex()
            a += (al + 3) & ~3
    return [err, msg, offs] + ([pol] if pol else [])

NEW, DEL, SET = 16, 17, 19
C = 0x1 | 0x4 | 0x400 | 0x200                  # REQUEST|ACK|CREATE|EXCL
A = 0x1 | 0x4
peer = lambda n: attr(1, ifi() + name(IFLA_IFNAME, n))
out = []
def case(label, r):
    out.append([label] + r)

case("veth v0", req(NEW, C, ifi() + name(IFLA_IFNAME, "v0") + kind("veth", peer("v1"))))
case("mtu 2 bytes", req(NEW, C, ifi() + name(IFLA_IFNAME, "x0") + attr(IFLA_MTU, b"\x00\x05") + kind("veth")))
case("ifname too long", req(NEW, C, ifi() + name(IFLA_IFNAME, "a" * 20) + kind("veth")))
case("ifname unterminated 16", req(NEW, C, ifi() + attr(IFLA_IFNAME, b"b" * 16) + kind("veth")))
case("master 3 bytes", req(NEW, A, ifi(idx("v0")) + attr(IFLA_MASTER, b"\x01\x00\x00")))
case("txqlen 8 bytes", req(NEW, A, ifi(idx("v0")) + attr(IFLA_TXQLEN, struct.pack("=Q", 77))))
case("unknown kind", req(NEW, C, ifi() + name(IFLA_IFNAME, "x1") + kind("nosuchkind")))
case("kind, no name", req(NEW, C, ifi() + kind("nosuchkind")))
case("duplicate name", req(NEW, C, ifi() + name(IFLA_IFNAME, "v0") + kind("veth", peer("x2"))))
case("duplicate name no EXCL", req(NEW, C & ~0x200, ifi() + name(IFLA_IFNAME, "v0") + kind("veth", peer("x2"))))
case("duplicate peer name", req(NEW, C, ifi() + name(IFLA_IFNAME, "x3") + kind("veth", peer("v0"))))
case("duplicate index", req(NEW, C, ifi(idx("v0")) + name(IFLA_IFNAME, "x4") + kind("veth", peer("x5"))))
case("peer index taken", req(NEW, C, ifi() + name(IFLA_IFNAME, "x6") + kind("veth", attr(1, ifi(1) + name(IFLA_IFNAME, "x7")))))
case("negative index", req(NEW, A, ifi(-5) + name(IFLA_IFNAME, "v0")))
case("short ifinfomsg", req(NEW, C, b"\0" * 8))
case("bridge br0", req(NEW, C, ifi() + name(IFLA_IFNAME, "br0") + kind("bridge")))
case("bridge br1", req(NEW, C, ifi() + name(IFLA_IFNAME, "br1") + kind("bridge")))
case("master missing index", req(NEW, A, ifi(idx("v0")) + attr(IFLA_MASTER, struct.pack("=I", 999))))
case("master not a master", req(NEW, A, ifi(idx("v0")) + attr(IFLA_MASTER, struct.pack("=I", idx("v1")))))
case("bridge into itself", req(NEW, A, ifi(idx("br0")) + attr(IFLA_MASTER, struct.pack("=I", idx("br0")))))
case("bridge into bridge", req(NEW, A, ifi(idx("br1")) + attr(IFLA_MASTER, struct.pack("=I", idx("br0")))))
case("lo into bridge", req(NEW, A, ifi(1) + attr(IFLA_MASTER, struct.pack("=I", idx("br0")))))
case("v0 into br0", req(NEW, A, ifi(idx("v0")) + attr(IFLA_MASTER, struct.pack("=I", idx("br0")))))
case("v0 already in br0 into br1", req(NEW, A, ifi(idx("v0")) + attr(IFLA_MASTER, struct.pack("=I", idx("br1")))))
case("mac multicast", req(NEW, A, ifi(idx("v1")) + attr(IFLA_ADDRESS, bytes.fromhex("010203040506"))))
case("mac short", req(NEW, A, ifi(idx("v1")) + attr(IFLA_ADDRESS, bytes.fromhex("0203"))))
case("netns no such pid", req(NEW, A, ifi(idx("v1")) + attr(IFLA_NET_NS_PID, struct.pack("=I", 999999))))
case("create in no such pid", req(NEW, C, ifi() + name(IFLA_IFNAME, "x8") + attr(IFLA_NET_NS_PID, struct.pack("=I", 999999)) + kind("veth")))
# kinds the running kernel may lack (the emulated one is built alike: kconfig_host.py)
case("dummy d0", req(NEW, C, ifi() + name(IFLA_IFNAME, "d0") + kind("dummy")))
case("bond b0", req(NEW, C, ifi() + name(IFLA_IFNAME, "b0") + kind("bond")))
case("netdevsim n0", req(NEW, C, ifi() + name(IFLA_IFNAME, "n0") + kind("netdevsim")))
case("v0 kind netdevsim", req(NEW, A, ifi(idx("v0")) + kind("netdevsim")))
case("setlink missing dev", req(SET, A, ifi(999)))
case("setlink no index no name", req(SET, A, ifi()))
case("dellink missing", req(DEL, A, ifi(999)))
case("dellink by missing name", req(DEL, A, ifi() + name(IFLA_IFNAME, "nosuch")))
case("dellink no name", req(DEL, A, ifi()))
case("dellink lo", req(DEL, A, ifi(1)))
case("dellink br0", req(DEL, A, ifi(idx("br0"))))
print(json.dumps({"cases": out, "links": sorted(s_dump().items(), key=lambda kv: kv[1])}))
'''


def test_bad_link_requests_answer_as_the_kernel(tmp_path):
    r, e, _ = run_client_in_both(tmp_path, CLIENT)
    assert len(e["cases"]) == len(r["cases"]) >= 30
    bad = [f"{rc[0]}: kernel {rc[1:]} xfrmd {ec[1:]}" for rc, ec in zip(r["cases"], e["cases"])
           if rc != ec]
    assert not bad, "\n".join(bad)
    assert e["links"] == r["links"]
    # the cases did fail (a test that cannot fail is a defect)
    assert sum(1 for c in e["cases"] if c[1] < 0) >= 25
