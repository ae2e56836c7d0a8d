"""What an unprivileged process may do with netlink: run (stdlib only, any python3) as an
unprivileged uid against a real kernel's namespace or through the shim against xfrmd, and
print one JSON line per check: the request and its errno (0 = allowed). Used by
tests/test_security.py, which compares the two."""
import errno
import json
import socket
import struct

NETLINK_ROUTE, NETLINK_XFRM, NETLINK_GENERIC = 0, 6, 16
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP = 270, 1, 2
SO_RCVBUFFORCE = 33
REQ, ACK, DUMP = 1, 4, 0x300
seq = 0
out = []


def check(name, fn):
    try:
        fn()
        err = "ok"
    except socket.timeout:
        err = "no answer"
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
    out.append([name, err])


def sock(proto, groups=0):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
    s.settimeout(5)
    s.bind((0, groups))
    return s


def request(s, t, flags, body):
    """Send one request; the errno of its NLMSG_ERROR, 0 for a dump's NLMSG_DONE."""
    global seq
    seq += 1
    s.send(struct.pack("=IHHII", 16 + len(body), t, flags | REQ, seq, 0) + body)
    while True:
        d = s.recv(65536)
        off = 0
        while off + 16 <= len(d):
            ln, typ, _, sq = struct.unpack_from("=IHHI", d, off)
            if sq == seq and typ == 2:
                return -struct.unpack_from("=i", d, off + 16)[0]
            if sq == seq and typ == 3:
                return 0
            off += max((ln + 3) & ~3, 16)


def expect_ok(s, t, flags, body):
    err = request(s, t, flags, body)
    if err:
        raise OSError(err, "")


def genl_family(s, name):
    """CTRL_CMD_GETFAMILY → the family id (any user may ask)."""
    global seq
    seq += 1
    a = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(a), 2) + a + bytes((-len(a)) % 4)
    body = struct.pack("=BBH", 3, 1, 0) + attr
    s.send(struct.pack("=IHHII", 16 + len(body), 0x10, REQ, seq, 0) + body)
    d = s.recv(65536)
    if struct.unpack_from("=H", d, 4)[0] == 2:
        raise OSError(-struct.unpack_from("=i", d, 16)[0], "")
    off = 20
    while off + 4 <= len(d):
        ln, t = struct.unpack_from("=HH", d, off)
        if t == 1:
            return struct.unpack_from("=H", d, off + 4)[0]
        off += (ln + 3) & ~3
    raise OSError(errno.ENOENT, "")


def main():
    # -- rtnetlink: GETs and dumps are anyone's, every other kind needs CAP_NET_ADMIN
    r = sock(NETLINK_ROUTE)
    ifi = struct.pack("=BxHiII", 0, 0, 0, 0, 0)
    for t, name in ((18, "GETLINK"), (22, "GETADDR"), (26, "GETROUTE"), (34, "GETRULE"),
                    (90, "GETNSID")):
        body = ifi if t in (18, 90) else struct.pack("=BBBBI", 0, 0, 0, 0, 0) + bytes(8)
        check(f"rtnl dump {name}", lambda t=t, body=body: expect_ok(r, t, DUMP, body))
    check("rtnl GETLINK lo", lambda: expect_ok(r, 18, ACK, struct.pack("=BxHiII", 0, 0, 1, 0, 0)))
    for t in range(16, 112):
        if (t - 16) & 3 != 2:
            check(f"rtnl type {t}", lambda t=t: expect_ok(r, t, ACK, ifi))
    for t in (16, 18):                    # shorter than struct rtgenmsg: ACKed, unchecked
        check(f"rtnl type {t} empty", lambda t=t: expect_ok(r, t, ACK, b""))
    check("rtnl join RTNLGRP_LINK", lambda: r.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, 1))
    check("rtnl bind groups", lambda: sock(NETLINK_ROUTE, 1).close())
    check("SO_RCVBUF", lambda: r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20))
    check("SO_RCVBUFFORCE", lambda: r.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20))
    check("SO_SNDBUFFORCE", lambda: r.setsockopt(socket.SOL_SOCKET, 32, 1 << 20))
    check("SO_SNDBUF", lambda: r.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20))
    r.close()

    # -- xfrm: every message needs CAP_NET_ADMIN, GETs and dumps included; so do its groups
    x = sock(NETLINK_XFRM)
    for t in range(16, 42):          # 41 is past XFRM_MSG_MAX: EINVAL, before the check
        check(f"xfrm type {t}", lambda t=t: expect_ok(x, t, ACK, bytes(256)))
    check("xfrm dump GETSA", lambda: expect_ok(x, 0x12, DUMP, b""))
    check("xfrm dump GETPOLICY", lambda: expect_ok(x, 0x15, DUMP, b""))
    for g in (1, 2, 3, 5, 7, 9):
        check(f"xfrm join group {g}", lambda g=g: x.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g))
    check("xfrm drop group 3", lambda: x.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, 3))
    check("xfrm bind groups", lambda: sock(NETLINK_XFRM, 1 << 2).close())
    x.close()

    # -- ethtool genetlink: the family is anyone's to look up; set ops are GENL_UNS_ADMIN_PERM
    g = sock(NETLINK_GENERIC)
    fam = []
    check("genl getfamily ethtool", lambda: fam.append(genl_family(g, "ethtool")))
    if fam:
        hdr = lambda cmd: struct.pack("=BBH", cmd, 1, 0)
        for cmd, name in ((3, "LINKINFO_SET"), (5, "LINKMODES_SET"), (8, "DEBUG_SET"),
                          (10, "WOL_SET"), (12, "FEATURES_SET"), (14, "PRIVFLAGS_SET"),
                          (16, "RINGS_SET"), (18, "CHANNELS_SET"), (20, "COALESCE_SET"),
                          (22, "PAUSE_SET"), (24, "EEE_SET")):
            check(f"ethtool {name}", lambda cmd=cmd: expect_ok(g, fam[0], ACK, hdr(cmd)))
    g.close()
    for name, res in out:
        print(json.dumps([name, res]))


main()
