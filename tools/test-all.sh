#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian 12 machine, then run all tests.
# This is the README's second quick-start command; .ci/run calls it and nothing else.
#
#   bash tools/test-all.sh [pytest args…]
#
# Needs root (or sudo) for apt-get. Debian packages: iproute2, strace, gcc, ethtool,
# strongswan-charon, strongswan-swanctl, tshark. libreswan conflicts with strongSwan, so its
# .deb is downloaded and extracted with `dpkg -x` into a cache dir ($XFRMD_LIBRESWAN_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# libreswan is extracted, not installed (it conflicts with strongSwan): its libraries are installed here
PKGS="iproute2 strace gcc libc6-dev ethtool strongswan-charon strongswan-swanctl tshark libldns3 libevent-pthreads-2.1-7 libevent-core-2.1-7 libnss3-tools libunbound8 libcurl3-nss"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "== installing Debian packages:$missing"
  $SUDO apt-get update -qq
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# strongSwan's charon must not be started by the package; tests start their own.
$SUDO systemctl disable --now strongswan-starter >/dev/null 2>&1 || true

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/xfrmd"
export XFRMD_LIBRESWAN_DIR="${XFRMD_LIBRESWAN_DIR:-$CACHE/libreswan}"
if [ ! -x "$XFRMD_LIBRESWAN_DIR/usr/libexec/ipsec/pluto" ]; then
  echo "== extracting libreswan into $XFRMD_LIBRESWAN_DIR"
  mkdir -p "$CACHE/debs" "$XFRMD_LIBRESWAN_DIR"
  (cd "$CACHE/debs" && apt-get download libreswan >/dev/null 2>&1) || {
    $SUDO apt-get update -qq; (cd "$CACHE/debs" && apt-get download libreswan >/dev/null); }
  dpkg -x "$(ls -t "$CACHE"/debs/libreswan_*.deb | head -n1)" "$XFRMD_LIBRESWAN_DIR"
fi

echo "== installing xfrmd with its test extras"
python3 -m pip install -q -e '.[test]' 2>&1 | grep -v -e "Running pip as the 'root' user" -e "is ignored: it is neither" || true

if python3 -c "import xfrmd.shim" 2>/dev/null; then
  echo "== building the preload shim"
  python3 -m xfrmd.shim build
fi

echo "== running the test suite"
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "no tests were collected" >&2
  exit 1
fi
exit "$rc"
