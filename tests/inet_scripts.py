"""The two-namespace set-up the INET tests share (tests/test_inet_udp.py, test_inet_raw.py):
$A and $B joined by a veth, IPv4 and IPv6 addresses, and an ESP tunnel for IPv4 each way."""

KEY = "0x0102030405060708090a0b0c0d0e0f1011121314"

# $A and $B: two namespaces joined by a veth (va, vb), IPv4 and IPv6 addresses
LINK = """set -e
ip netns add $A; ip netns add $B
ip -n $A link add va type veth peer name vb netns $B
ip -n $A addr add 10.9.0.1/24 dev va; ip -n $B addr add 10.9.0.2/24 dev vb
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set va up; ip -n $B link set vb up
# after both ends are up: an address of a link without carrier stays tentative here (the
# emulated veth does not yet restart addrconf when its peer comes up)
ip -n $A addr add fd00::1/64 dev va nodad; ip -n $B addr add fd00::2/64 dev vb nodad
"""

# an ESP tunnel (rfc4106(gcm(aes))) each way for 10.9.0.1 <-> 10.9.0.2
ESP = f"""for ns in $A $B; do
  ip -n $ns xfrm state add src 10.9.0.1 dst 10.9.0.2 proto esp spi 0x100 reqid 1 mode tunnel \\
     aead 'rfc4106(gcm(aes))' {KEY} 128
  ip -n $ns xfrm state add src 10.9.0.2 dst 10.9.0.1 proto esp spi 0x200 reqid 2 mode tunnel \\
     aead 'rfc4106(gcm(aes))' {KEY} 128
done
for d in "$A out" "$B in"; do set -- $d
  ip -n $1 xfrm policy add src 10.9.0.1 dst 10.9.0.2 dir $2 \\
     tmpl src 10.9.0.1 dst 10.9.0.2 proto esp reqid 1 mode tunnel
done
for d in "$B out" "$A in"; do set -- $d
  ip -n $1 xfrm policy add src 10.9.0.2 dst 10.9.0.1 dir $2 \\
     tmpl src 10.9.0.2 dst 10.9.0.1 proto esp reqid 2 mode tunnel
done
set +e
"""
