"""Differential: ethtool genetlink requests with a malformed request header
(``ethnl_parse_header_dev_get`` after genetlink's strict parse of the nest: DEV_INDEX and
FLAGS of the wrong length, a name without NUL or too long, no such device, index and name
that disagree, a reserved flag, the nest flag missing, an unknown type or leftover bytes in
it), a string set's ID, a bitset's SIZE and a bit's INDEX (FEATURES_SET) of the wrong length
— on a fresh real namespace and through `xfrmd run --topology bare`: errno, extack message
and offset must match (the nested u32s raised struct.error in the fuzz run of issue 16)."""
from __future__ import annotations


from tests.differential.test_rtnl_diff import run_client_in_both

CLIENT = r'''
import socket, struct, json
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16)
s.bind((0, 0)); s.setsockopt(270, 11, 1); s.settimeout(5)
def attr(t, data): return struct.pack("=HH", 4 + len(data), t) + data + bytes(-len(data) % 4)
def nest(t, *a): return attr(t | 0x8000, b"".join(a))
seq = 0
def req(t, cmd, body, flags=5):
    global seq; seq += 1
    s.send(struct.pack("=IHHII", 20 + len(body), t, flags, seq, 0) + struct.pack("=BBH", cmd, 1, 0) + body)
    while True:
        r = s.recv(65536); off = 0
        while off + 16 <= len(r):
            L, T, F, S = struct.unpack_from("=IHHI", r, off)
            if S == seq and T == 2:
                err = struct.unpack_from("=i", r, off + 16)[0]; msg = offs = None
                if F & 0x200:
                    a = off + 20 + ((struct.unpack_from("=I", r, off + 20)[0] + 3) & ~3 if err else 16)
                    while a + 4 <= off + L:
                        al, at = struct.unpack_from("=HH", r, a)
                        if al < 4: break
                        if at == 1: msg = r[a+4:a+al].rstrip(b"\0").decode()
                        elif at == 2: offs = struct.unpack_from("=I", r, a+4)[0]
                        a += (al + 3) & ~3
                return [err, msg, offs]
            if S == seq and T not in (2, 3):
                data = r[off:off+L]
            off += (L + 3) & ~3
# resolve ethtool
seq += 1
body = struct.pack("=BBH", 3, 1, 0) + attr(2, b"ethtool\0")
s.send(struct.pack("=IHHII", 16 + len(body), 16, 1, seq, 0) + body)
r = s.recv(65536); fid = None; a = 20
while a + 4 <= len(r):
    al, at = struct.unpack_from("=HH", r, a)
    if at == 1: fid = struct.unpack_from("=H", r, a + 4)[0]
    a += (al + 3) & ~3
hdr_lo = nest(1, attr(2, b"lo\0"))
out = []
out.append(["hdr ifindex 2 bytes", req(fid, 1, nest(1, attr(1, b"\1\0")))])
out.append(["hdr ifindex 5 bytes", req(fid, 1, nest(1, attr(1, b"\1\0\0\0\0")))])
out.append(["hdr flags 2 bytes", req(fid, 1, nest(1, attr(1, struct.pack("=I", 1)), attr(3, b"\1\0")))])
out.append(["strset id 1 byte", req(fid, 1, hdr_lo + nest(2, nest(1, attr(1, b"\4"))))])
out.append(["features bit index 2 bytes", req(fid, 12, hdr_lo + nest(3, nest(3, nest(1, attr(1, b"\3\0")))))])
out.append(["features bitset size 1 byte", req(fid, 12, hdr_lo + nest(3, attr(2, b"\1"), attr(4, bytes(4)), attr(5, bytes(4))))])
out.append(["hdr name unterminated", req(fid, 1, nest(1, attr(2, b"lo")))])
out.append(["hdr name too long", req(fid, 1, nest(1, attr(2, b"a" * 130 + b"\0")))])
out.append(["hdr name no such", req(fid, 1, nest(1, attr(2, b"nosuch\0")))])
out.append(["hdr index no such", req(fid, 1, nest(1, attr(1, struct.pack("=I", 99))))])
out.append(["hdr index+name mismatch", req(fid, 1, nest(1, attr(1, struct.pack("=I", 1)), attr(2, b"eth9\0")))])
out.append(["hdr flags reserved", req(fid, 1, nest(1, attr(1, struct.pack("=I", 1)), attr(3, struct.pack("=I", 0x80))))])
out.append(["hdr not nested", req(fid, 1, attr(1, attr(1, struct.pack("=I", 1))))])
out.append(["hdr unknown inner attr", req(fid, 1, nest(1, attr(1, struct.pack("=I", 1)), attr(9, b"\0\0\0\0")))])
out.append(["hdr inner junk", req(fid, 1, nest(1, attr(1, struct.pack("=I", 1)), b"\7\0\1\0"))])
out.append(["hdr missing, linkinfo", req(fid, 7, b"")])
out.append(["hdr empty, linkinfo", req(fid, 7, nest(1))])
print(json.dumps(out))
'''


def test_ethtool_nested_lengths_answer_as_the_kernel(tmp_path):
    r, e, _ = run_client_in_both(tmp_path, CLIENT)
    assert len(r) == len(e) == 17
    bad = [f"{rc[0]}: kernel {rc[1]} xfrmd {ec[1]}" for rc, ec in zip(r, e) if rc != ec]
    assert not bad, "\n".join(bad)
    assert all(c[1][0] in (-22, -19) for c in e)
