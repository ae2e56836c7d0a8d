"""`xfrmd serve --pcap`: the capture is a LINKTYPE_NETLINK file that tshark decodes."""
import shutil
import subprocess

from netlink_codec.netlink import NETLINK_XFRM, NLM_F_DUMP
from netlink_codec.xfrm import XfrmMsg
from tests.conftest import require
from xfrmd.pcap import PcapWriter
from xfrmd.testing import make_kernel, running_server


def test_pcap_decodes_with_tshark(tmp_path):
    require(shutil.which("tshark") is not None, "tshark is not installed")
    pcap = tmp_path / "nl.pcap"
    kernel = make_kernel()
    kernel.tracers.append(PcapWriter.open(str(pcap), kernel))
    with running_server(kernel) as srv, srv.netlink(NETLINK_XFRM) as nl:
        nl.request(XfrmMsg.GETPOLICY, NLM_F_DUMP)
        nl.request(XfrmMsg.GETSADINFO, 0, b"\xff\xff\xff\xff")
    out = subprocess.run(["tshark", "-r", str(pcap), "-V"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    # request dump, NLMSG_DONE, GETSADINFO, NEWSADINFO
    assert out.count("Linux netlink (cooked header)") == 4
    assert out.count("Family: IPsec (0x0006)") == 4
    assert "Message type: Protocol-specific (0x0015)" in out  # XFRM_MSG_GETPOLICY
    assert "Message type: End of a dump (0x0003)" in out
    assert "Flags: 0x0301" in out  # REQUEST|ROOT|MATCH


def test_pcap_record_layout(tmp_path):
    import io
    import struct
    kernel = make_kernel()
    buf = io.BytesIO()
    w = PcapWriter(buf, kernel)
    sock = kernel.socket(NETLINK_XFRM)
    w("tx", sock, b"\x10\x00\x00\x00\x15\x00\x01\x03\x01\x00\x00\x00\x00\x00\x00\x00")
    w("rx", sock, b"\0\0\0\0\x01\x00\x82\x00")  # a transport frame is not captured
    data = buf.getvalue()
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, linktype) == (0xA1B2C3D4, 253)
    incl, orig = struct.unpack_from("<II", data, 24 + 8)
    assert incl == orig == 16 + 16
    cooked = data[24 + 16:24 + 32]
    assert cooked == struct.pack(">HHH8sH", 4, 824, 0, b"", 6)
    assert len(data) == 24 + 16 + 32
