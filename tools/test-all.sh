#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian 12 / Ubuntu 24.04 machine, then
# run all tests. This is the README's second quick-start command; .ci/run calls it and nothing
# else.
#
#   bash tools/test-all.sh [pytest args…]
#
# Needs root (or sudo) for apt-get. Debian packages: iproute2, strace, gcc, ethtool,
# strongswan-charon, strongswan-swanctl, tshark, chromium (the lag-report page's screenshot
# test). libreswan conflicts with strongSwan, so its
# .deb is downloaded and extracted with `dpkg -x` into a cache dir ($XFRMD_LIBRESWAN_DIR).
# Python packages go into the active virtual environment ($VIRTUAL_ENV), else into .venv
# (see tools/install.sh: the system Python is "externally managed" and refuses pip).
#
# Each install step is quiet when it works; the first one that fails shows its output and
# stops the script with one line naming the step.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

STEP_LOG="$(mktemp)"
trap 'rm -f "$STEP_LOG"' EXIT

# step NAME CMD ARGS…: one install step, its output kept unless it fails.
step() {
  local name="$1"; shift
  echo "== $name"
  if ! "$@" >"$STEP_LOG" 2>&1; then
    grep -v -e "Running pip as the 'root' user" -e "is ignored: it is neither" "$STEP_LOG" \
      | tail -n 40 >&2 || true
    echo "test-all.sh: stopped, this step failed: $name" >&2
    exit 1
  fi
}

# python3-dev: the interpreter's headers, for the C speedups (xfrmd/cext.py);
# libreswan is extracted, not installed (it conflicts with strongSwan): its libraries are installed here;
# jq: bond_ipsec_offload.sh reads the active slave with it
PKGS="iproute2 iputils-ping jq strace gcc libc6-dev python3-dev ethtool strongswan-charon strongswan-swanctl tshark mmdebstrap uidmap uuid-runtime libldns3 libevent-pthreads-2.1-7 libevent-core-2.1-7 libnss3-tools libunbound8 libcurl3-nss chromium"
# the system Python's venv module (Debian ships it apart), unless a venv is already active
if [ -z "${VIRTUAL_ENV:-}" ]; then PKGS="$PKGS python3-venv"; fi

install_debian_packages() {
  local missing="" p installable="" deps
  for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  [ -n "$missing" ] || return 0
  echo "installing:$missing"
  $SUDO apt-get update -qq
  # a name this release does not have (Ubuntu 24.04 renamed libraries, e.g. …t64) is left to
  # libreswan's own dependency list below
  for p in $missing; do
    if apt-get install -s -qq "$p" >/dev/null 2>&1; then installable="$installable $p"
    else echo "not in this release's archive, skipped: $p"; fi
  done
  deps="$(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
            --no-replaces --no-enhances libreswan | sed -n 's/^ *Depends: \([^<][^ ]*\)$/\1/p')"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $installable $deps
}

stop_packaged_daemons() {
  # strongSwan's charon must not be started by the package; tests start their own.
  $SUDO systemctl disable --now strongswan-starter >/dev/null 2>&1 || true
}

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/xfrmd"
export XFRMD_LIBRESWAN_DIR="${XFRMD_LIBRESWAN_DIR:-$CACHE/libreswan}"
extract_libreswan() {
  [ ! -x "$XFRMD_LIBRESWAN_DIR/usr/libexec/ipsec/pluto" ] || return 0
  mkdir -p "$CACHE/debs" "$XFRMD_LIBRESWAN_DIR"
  (cd "$CACHE/debs" && apt-get download libreswan) || {
    $SUDO apt-get update -qq; (cd "$CACHE/debs" && apt-get download libreswan); }
  dpkg -x "$(ls -t "$CACHE"/debs/libreswan_*.deb | head -n1)" "$XFRMD_LIBRESWAN_DIR"
}

step "installing Debian packages" install_debian_packages
step "stopping the packaged strongSwan" stop_packaged_daemons
step "extracting libreswan into $XFRMD_LIBRESWAN_DIR" extract_libreswan
step "installing xfrmd with its test extras (tools/install.sh)" bash tools/install.sh --extras test

# from here on, python3 is the environment's (tests start `python3` and `xfrmd` by name)
VENV="${VIRTUAL_ENV:-${XFRMD_VENV:-$PWD/.venv}}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"

step "building the preload shim" python3 -m xfrmd.shim build
# the hot paths' C extensions; the suite runs with them and (tests/test_cext.py) without them
step "building the C speedups (xfrmd/cext.py)" python3 -m xfrmd.cext build

# the userlands (trixie: ip 6.15, charon 6.0.1, pluto 5.2) for the tests marked `userland`;
# cached in $XDG_CACHE_HOME/xfrmd/userlands, rebuilt only when their package lists change.
# Not a step: a mirror that fails here fails those tests (under CI), not the whole run.
echo "== building the userlands"
python3 -m xfrmd.cli userland build trixie-strongswan trixie-libreswan ||
  echo "== a userland could not be built: the tests marked userland will fail" >&2

# the other projects' suites for tests/test_suites*.py (docs/suites.md): the kernel's net
# selftests (Debian's linux-source-6.12 of trixie) and bond_ipsec_offload.sh (forky's newer
# linux-source), pyroute2's tests (Debian's pyroute2 source, netaddr from PyPI) and iproute2's
# testsuite (Debian's source of the installed ip); cached in
# $XDG_CACHE_HOME/xfrmd/{kselftest,pyroute2,iproute2}. Not a step either, for the same reason.
echo "== fetching the kernel selftests, pyroute2's and iproute2's tests"
python3 -m xfrmd.cli suites fetch >/dev/null ||
  echo "== a suite could not be fetched: tests/test_suites*.py will fail" >&2

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
