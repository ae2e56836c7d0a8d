"""Python API habits: request() returns the answer's messages without
the dump's closing NLMSG_DONE, and messages print with names and addresses."""
from __future__ import annotations

from netlink_codec import netlink as N

from .sad_helpers import AEAD, M, usersa_info


def test_a_dump_is_its_messages_without_nlmsg_done(xfrmd_server):
    with xfrmd_server.netlink(N.NETLINK_XFRM) as nl:
        assert nl.request(M.GETSA, N.NLM_F_DUMP) == []
        nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(spi=0x1000) + AEAD)
        nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(spi=0x1001) + AEAD)
        got = nl.request(M.GETSA, N.NLM_F_DUMP)
        assert [(m.type, m.fixed.id.spi) for m in got] == [(M.NEWSA, 0x1001), (M.NEWSA, 0x1000)] \
            or [(m.type, m.fixed.id.spi) for m in got] == [(M.NEWSA, 0x1000), (M.NEWSA, 0x1001)]
        (ack,) = nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(spi=0x1002) + AEAD)
        assert ack.type == N.NLMSG_ERROR and ack.fixed.error == 0    # an ACK asked for stays


async def test_the_trio_client_too(xfrmd_trio_server):
    nl = await xfrmd_trio_server.trio_netlink(N.NETLINK_XFRM)
    try:
        await nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(spi=0x1000) + AEAD)
        got = await nl.request(M.GETSA, N.NLM_F_DUMP)
        assert [m.type for m in got] == [M.NEWSA]
    finally:
        nl.close()


def test_messages_print_names_and_addresses(xfrmd_server):
    with xfrmd_server.netlink(N.NETLINK_XFRM) as nl:
        nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(spi=0x1000) + AEAD)
        (sa,) = nl.request(M.GETSA, N.NLM_F_DUMP)
        (err,) = nl.request(M.NEWSA, N.NLM_F_ACK, usersa_info(mode=9) + AEAD,
                            raise_errors=False)
    text = repr(sa)
    assert text.startswith("<XFRM_MSG_NEWSA seq=")
    for part in ("id={daddr=198.51.100.1, spi=0x00001000, proto=50}", "saddr=192.0.2.1",
                 "soft_byte_limit=inf", "XFRMA_ALG_AEAD={alg_name='rfc4106(gcm(aes))', "
                 "alg_key_len=160, alg_icv_len=128}"):
        assert part in text, text
    assert "\\x00" not in text
    assert repr(err).endswith(" error=-22 extack='Unsupported mode'>"), repr(err)
