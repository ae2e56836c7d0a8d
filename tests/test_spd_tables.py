"""The SPD's two tables as a user sees them (xfrmd/xfrm/spdb.py): the index table is also the
dump order (an UPDPOLICY keeps the old index and goes to the head of the dump), the
by-selector key holds the mark as xfrm_policy_insert stores it (masked), and the template
families validate_tmpl fills show in the dump and in the echo of an error."""
import errno as E
import struct

import pytest

from netlink_codec import netlink as N
from netlink_codec import xfrm as X
from tests.differential.test_policy_diff import DUMP, TMPL1, add, m, pid, sel, tmpl
from tests.sad_helpers import M, Nl, messages

A = X.Xfrma
S1, S2 = sel(dst="10.0.1.0"), sel(dst="10.0.2.0")


@pytest.fixture
def nl(kernel):
    return Nl(kernel)


def dump(nl):
    """(selector, priority, index) of each policy, in dump order."""
    out = []
    for d in nl.send(DUMP):
        for t, _f, _s, _p, raw in messages(d):
            if t == M.NEWPOLICY:
                prio, index = struct.unpack_from("=II", raw, 16 + 152)
                out.append((raw[16:16 + 56], prio, index))
    return out


def get(nl, payload):
    (t, _f, _s, _p, raw), = [x for d in nl.send(m(M.GETPOLICY, payload, N.NLM_F_REQUEST))
                             for x in messages(d)]
    return t, raw


def test_update_keeps_the_index_and_goes_to_the_head_of_the_dump(nl):
    nl.ok(add(TMPL1, s=S1, priority=1))
    nl.ok(add(TMPL1, s=S2, priority=2))
    (_, _, i2), (_, _, i1) = dump(nl)
    nl.ok(add(TMPL1, t=M.UPDPOLICY, s=S1, priority=7))
    assert dump(nl) == [(S1, 7, i1), (S2, 2, i2)]
    t, raw = get(nl, pid(index=i1))
    assert t == M.NEWPOLICY and struct.unpack_from("=I", raw, 16 + 152)[0] == 7
    # deleted by selector: gone by index too, and the selector can be added again
    nl.ok(m(M.DELPOLICY, pid(S1)))
    assert nl.errno_of(m(M.GETPOLICY, pid(index=i1)))[0] == -E.ENOENT
    assert dump(nl) == [(S2, 2, i2)]
    nl.ok(add(TMPL1, s=S1, priority=3))
    assert [p for _, p, _ in dump(nl)] == [3, 2]


def test_the_mark_is_keyed_as_stored_masked(nl):
    nl.ok(add(TMPL1, N.nla(A.MARK, struct.pack("=II", 0x15, 0xF))))
    # xfrm_policy_insert stored (5, 0xF); the lookup compares the user's mark unmasked
    assert nl.errno_of(m(M.GETPOLICY, pid() + N.nla(A.MARK, struct.pack("=II", 0x15, 0xF))))[0] \
        == -E.ENOENT
    t, raw = get(nl, pid() + N.nla(A.MARK, struct.pack("=II", 5, 0xF)))
    assert t == M.NEWPOLICY
    assert nl.errno_of(add(TMPL1, N.nla(A.MARK, struct.pack("=II", 5, 0xF))))[0] == -E.EEXIST


def test_filled_template_family_shows_in_the_dump_and_in_an_error_echo(nl):
    nl.ok(add(N.nla(A.TMPL, tmpl() + tmpl(proto=X.IPPROTO_AH, reqid=2))))
    (_, _f, _s, _p, raw), = [x for d in nl.send(DUMP) for x in messages(d) if x[0] == M.NEWPOLICY]
    at = 16 + 168 + 4
    assert [struct.unpack_from("=H", raw, at + 64 * i + 24)[0] for i in range(2)] == \
        [X.AF_INET, X.AF_INET]
    # the second template is invalid (proto 0): the error echoes the request with the
    # family validate_tmpl wrote into the first (and the second, checked after its fill)
    bad = add(N.nla(A.TMPL, tmpl() + tmpl(proto=0)), s=S2)
    (t, _f, _s, _p, err), = [x for d in nl.send(bad) for x in messages(d)]
    assert t == N.NLMSG_ERROR and struct.unpack_from("=i", err, 16)[0] == -E.EINVAL
    echo = err[20:]
    assert len(echo) >= len(bad)
    assert [struct.unpack_from("=H", echo, at + 64 * i + 24)[0] for i in range(2)] == \
        [X.AF_INET, X.AF_INET]
    assert echo[:at + 24] == bad[:at + 24]



# user indices that share all but the direction bits, or all but the top bits
INDICES = [0x10, 0x11, 0x12, 0x20000001, 0xFFFFFFF9, 0xFFFFFFFA]


def test_users_indices_that_differ_in_few_bits_stay_apart(nl):
    """The by-index table is keyed by the index rotated (spdb.idx_key): each policy is found
    and deleted by its own index, the others staying."""
    sels = {i: sel(dst=f"10.0.9.{n}") for n, i in enumerate(INDICES)}
    for i in INDICES:
        nl.ok(add(TMPL1, s=sels[i], index=i, dir=i & 7))
    assert sorted(i for _, _, i in dump(nl)) == sorted(INDICES)
    left = list(INDICES)
    for i in INDICES:
        for j in left:
            t, raw = get(nl, pid(index=j, dir=j & 7))
            assert t == M.NEWPOLICY and raw[16:16 + 56] == sels[j]
            assert struct.unpack_from("=I", raw, 16 + 156)[0] == j
        nl.ok(m(M.DELPOLICY, pid(index=i, dir=i & 7)))
        left.remove(i)
        assert nl.errno_of(m(M.GETPOLICY, pid(index=i, dir=i & 7)))[0] == -E.ENOENT
    assert dump(nl) == []
