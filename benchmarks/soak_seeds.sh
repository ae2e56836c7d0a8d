# Commands whose requests seed the soak fuzzer (python3 -m benchmarks.soak --record-seeds).
# Failures are fine: a refused request is a seed too.
K=0x00112233445566778899aabbccddeeff
A=0x00112233445566778899aabbccddeeff00112233
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 replay-window 32 flag esn limit time-hard 2592000 sel src 10.0.0.0/24 dst 10.1.0.0/24
ip xfrm state add src 192.0.2.1 dst 192.0.2.3 proto esp spi 0x101 enc 'cbc(aes)' $K auth-trunc 'hmac(sha256)' 0x0011223344556677889900112233445566778899001122334455667788990011 128 encap espinudp 4500 4500 0.0.0.0 if_id 7 output-mark 0x5/0xff
ip xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x102 enc 'cbc(aes)' $K auth 'hmac(sha1)' $A mode transport ctx 'system_u:object_r:foo_t' 2>/dev/null
ip xfrm state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0x103 enc 'cbc(aes)' $K auth 'hmac(sha1)' $A mode transport
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto ah spi 0x104 auth 'hmac(sha1)' $A
ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto comp spi 0x105 comp deflate
ip xfrm state add src 192.0.2.1 dst 192.0.2.4 proto esp spi 0x106 aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 offload dev eth2 dir out
ip xfrm state add src 192.0.2.1 dst 192.0.2.5 proto esp spi 0x107 aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 offload packet dev eth2 dir in
ip xfrm state update src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 reqid 1 mode tunnel aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 replay-window 32 flag esn
ip xfrm state get src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100
ip xfrm state list
ip xfrm state count
ip xfrm state allocspi src 192.0.2.1 dst 192.0.2.9 proto esp min 0x1000 max 0x2000
ip xfrm state delete src 192.0.2.1 dst 192.0.2.3 proto esp spi 0x101
ip xfrm policy add src 10.0.0.0/24 dst 10.1.0.0/24 dir out priority 10 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel
ip xfrm policy add src 10.1.0.0/24 dst 10.0.0.0/24 dir in tmpl src 192.0.2.2 dst 192.0.2.1 proto esp mode tunnel level use mark 0x1/0xff if_id 3 limit time-hard 2592000
ip xfrm policy add src 2001:db8:1::/64 dst 2001:db8:2::/64 proto tcp sport 22 dport 1024 dir fwd action block
ip xfrm policy add src 10.3.0.0/24 dst 10.4.0.0/24 dir out offload packet dev eth2 tmpl src 192.0.2.1 dst 192.0.2.5 proto esp mode tunnel
ip xfrm policy update src 10.0.0.0/24 dst 10.1.0.0/24 dir out priority 11 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 1 mode tunnel
ip xfrm policy get src 10.0.0.0/24 dst 10.1.0.0/24 dir out
ip xfrm policy get index 0x8 dir out
ip xfrm policy list
ip xfrm policy count
ip xfrm policy set hthresh4 24 16 hthresh6 64 48
ip xfrm policy setdefault in block fwd accept out accept
ip xfrm policy getdefault
ip xfrm policy delete src 10.1.0.0/24 dst 10.0.0.0/24 dir in mark 0x1/0xff if_id 3
ip xfrm policy add src 10.2.0.0/24 dst 10.3.0.0/24 dir in mark 1 mask 0xff if_id 3 tmpl src 192.0.2.2 dst 192.0.2.1 proto esp mode tunnel
ip xfrm policy delete src 10.2.0.0/24 dst 10.3.0.0/24 dir in mark 1 mask 0xff if_id 3
ip xfrm policy delete src 10.0.0.0/24 dst 10.1.0.0/24 dir out
ip xfrm policy flush
ip xfrm state flush proto ah
ip xfrm state flush
ip link add dummy9 type dummy
ip link add vA type veth peer name vB
ip link add bond9 type bond mode 802.3ad xmit_hash_policy layer3+4
ip link set dummy9 master bond9
ip link set dummy9 nomaster
ip link set dummy9 up mtu 1400 address 02:00:00:00:00:09 name dummy8
ip link set dummy8 down
ip link show
ip -d link show dev eth0
ip -s link show dev eth0
ip link set dummy8 netns other 2>/dev/null
ip link del bond9
ip link del vA
ip addr add 10.9.0.1/24 brd + dev eth2 label eth2:1
ip addr add 2001:db8:9::1/64 dev eth2 valid_lft 100 preferred_lft 50
ip addr add 10.9.1.1 peer 10.9.1.2 dev eth2
ip addr show
ip -6 addr show dev eth2
ip addr del 10.9.0.1/24 dev eth2
ip addr flush dev eth2 label eth2:1
ip route add 10.20.0.0/16 via 192.0.2.254 metric 50 table 100 proto static
ip route add 10.21.0.0/16 dev eth2 src 192.0.2.1 mtu 1300 realm 4
ip route add blackhole 10.22.0.0/16
ip route add 10.23.0.0/16 nexthop via 192.0.2.254 weight 1 nexthop via 198.51.100.254 weight 2
ip -6 route add 2001:db8:9::/64 dev eth2 expires 2592000
ip -6 route add 2001:db8:8::/64 via 2001:db8::fe metric 100 pref high
ip route get 10.20.1.1
ip route get 10.20.1.1 from 192.0.2.1 iif eth2 2>/dev/null
ip -6 route get 2001:db8:9::5
ip route show table all
ip -6 route show
ip route del 10.20.0.0/16 table 100
ip route replace 10.21.0.0/16 dev eth2
ip route change 10.21.0.0/16 dev eth2 mtu 1200
ip route flush table 100
ip rule add from 10.0.0.0/8 to 10.1.0.0/16 table 100 pref 100 fwmark 0x5/0xff iif eth2 oif eth1 tos 0x10
ip rule add not from all ipproto tcp sport 1000-2000 dport 22 lookup main suppress_prefixlength 0 pref 200
ip -6 rule add from 2001:db8::/32 table 200 uidrange 100-200 l3mdev 2>/dev/null
ip -6 rule add from 2001:db8::/32 table 200 priority 300
ip rule show
ip -6 rule show
ip rule del pref 100
ip -6 rule del priority 300
ip netconf show
ip -6 netconf show dev eth2
ip netconf show dev eth2
ip neigh show
ip neigh add 192.0.2.77 lladdr 02:00:00:00:00:77 dev eth2 2>/dev/null
ip neigh del 192.0.2.77 dev eth2 2>/dev/null
ip netns list
ip -all netns 2>/dev/null
ip link show type bond
ip monitor all & P=$!; sleep 0.2; kill $P
ethtool eth0
ethtool -i eth0
ethtool -k eth0
ethtool -K eth0 esp-hw-offload on
ethtool -K eth0 esp-hw-offload off rx-checksumming on
ethtool -S eth0
ethtool -g eth0
ethtool -l eth0
ethtool -c eth0
ethtool -a eth0
ethtool -P eth0
ethtool --show-features eth0
ethtool --json -k nsim0
ethtool -s eth2 speed 1000 duplex full autoneg off
ethtool --show-eee eth0
ethtool -T eth0
ethtool --show-fec eth0
ethtool -m eth0
ethtool --monitor & P=$!; sleep 0.2; kill $P
ip link add br9 type bridge stp_state 0 forward_delay 400
ip link set eth2 master br9
ip link set eth2 nomaster
ip link add bond7 type bond mode active-backup miimon 100 primary eth2 arp_interval 0
ip link set bond7 type bond mode balance-xor xmit_hash_policy layer2+3
ip link add link eth2 name eth2.10 type vlan id 10 2>/dev/null
ip link set eth2 txqueuelen 500 promisc on allmulticast on arp off multicast on
ip link set eth2 alias "uplink" group 5
ip link property add dev eth2 altname uplink0 2>/dev/null
ip -6 addr add 2001:db8:7::1/64 dev eth2 nodad noprefixroute
ip addr add 10.9.2.1/24 dev eth2 valid_lft forever preferred_lft forever metric 50
ip addr change 10.9.2.1/24 dev eth2 preferred_lft 0
ip netns add other2 2>/dev/null
ip netns set other2 7 2>/dev/null
ip netns list-id 2>/dev/null
ip xfrm state add src 192.0.2.1 dst 192.0.2.6 proto esp spi 0x108 mode beet aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 sel src 10.8.0.1 dst 10.8.0.2 flag icmp flag af-unspec extra-flag dont-encap-dscp
ip xfrm state add src 192.0.2.1 dst 192.0.2.7 proto esp spi 0x109 aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 replay-oseq 5 replay-seq 3 replay-window 64 tfcpad 16 mark 7 mask 0xff coa 192.0.2.99
ip xfrm state add src 192.0.2.1 dst 192.0.2.8 proto esp spi 0x10a aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 offload crypto dev nsim0 dir out
ip xfrm state add src 192.0.2.1 dst 192.0.2.8 proto esp spi 0x10b aead 'rfc4106(gcm(aes))' 0x0011223344556677889900112233445566778899 128 flag esn replay-window 128 limit byte-soft 1000 limit packet-hard 100000 limit time-use-soft 60
ip xfrm state add src 192.0.2.1 dst 192.0.2.8 proto esp spi 0x10c enc 'cbc(aes)' 0x00112233445566778899aabbccddeeff auth 'hmac(sha1)' 0x0011223344556677889900112233445566778899 encap espinudp-nonike 4501 4502 0.0.0.0 dir out
ip xfrm policy add src 10.5.0.0/16 dst 10.6.0.0/16 dir out ptype sub tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 2 mode tunnel 2>/dev/null
ip xfrm policy add src 10.5.0.0/16 dst 10.6.0.0/16 dev eth2 dir in ctx "a" action allow flag localok flag icmp tmpl proto ah mode transport optional
ip xfrm policy add dir out src 10.7.0.0/16 dst 10.8.0.0/16 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp reqid 3 mode tunnel tmpl src 192.0.2.1 dst 192.0.2.3 proto comp mode tunnel
ip xfrm policy deleteall dir in
ip xfrm state deleteall proto esp
ip xfrm state list spi 0x100
ip xfrm policy list dir out priority 10
ethtool -K nsim0 esp-hw-offload on esp-tx-csum-hw-offload on
ethtool --show-priv-flags eth0
ethtool -x eth0
ethtool --show-rxfh eth0
ethtool -s eth2 msglvl 7
ethtool --set-priv-flags eth0 x on
ethtool -A eth0 rx on
ethtool -G eth0 rx 512
ethtool -L eth0 combined 4
ethtool -C eth0 rx-usecs 10
true
