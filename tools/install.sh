#!/usr/bin/env bash
# Install xfrmd into a Python virtual environment, then optionally run a command in it.
# This is the README's first quick-start command:
#
#   bash tools/install.sh [--extras test] [-- CMD ARGS…]      e.g.  bash tools/install.sh -- xfrmd serve
#
# Which environment: the active one when $VIRTUAL_ENV is set; else $XFRMD_VENV (default .venv
# in the checkout), made with ${XFRMD_PYTHON:-python3} if it does not exist yet. A system
# Python that is "externally managed" (PEP 668: Debian 12, Ubuntu 24.04) refuses `pip install`,
# so xfrmd never installs into it. When `python3 -m venv` is missing (Debian ships it in
# python3-venv), that package is installed with apt-get (root, or sudo).
# tools/test-all.sh uses the same environment (it calls this script with --extras test).
set -euo pipefail
here="$PWD"
cd "$(dirname "$0")/.."

extras=""
while [ $# -gt 0 ]; do
  case "$1" in
    --extras) extras="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: bash tools/install.sh [--extras test] [-- CMD ARGS…]" >&2; exit 2 ;;
  esac
done

fail() { echo "tools/install.sh: $*" >&2; exit 1; }

if [ -n "${VIRTUAL_ENV:-}" ]; then
  VENV="$VIRTUAL_ENV"
else
  VENV="${XFRMD_VENV:-$PWD/.venv}"
  case "$VENV" in /*) ;; *) VENV="$here/$VENV" ;; esac
  if [ ! -x "$VENV/bin/python" ]; then
    PY="${XFRMD_PYTHON:-python3}"
    command -v "$PY" >/dev/null || fail "no $PY on PATH (Debian: apt-get install python3)"
    if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      # Debian and Ubuntu split venv and ensurepip out of the interpreter's package.
      command -v apt-get >/dev/null || fail "$PY has no venv module; install it, or activate a venv first"
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
      echo "== installing python3-venv (the system Python lacks venv)" >&2
      { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
          $SUDO apt-get install -y -qq --no-install-recommends python3-venv >/dev/null; } \
        || fail "apt-get install python3-venv failed"
    fi
    echo "== making a virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV" || fail "$PY -m venv $VENV failed"
  fi
fi
[ -x "$VENV/bin/python" ] || fail "$VENV is not a virtual environment (no bin/python)"

echo "== installing xfrmd${extras:+ with its $extras extras} into $VENV" >&2
spec="."
[ -z "$extras" ] || spec=".[$extras]"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install -q -e "$spec" >"$log" 2>&1; then
  grep -v -e "Running pip as the 'root' user" -e "is ignored: it is neither" "$log" >&2 || true
  fail "pip install -e '$spec' failed"
fi

# the hot paths' C extensions (xfrmd/cext.py): without a compiler or the interpreter's
# headers (Debian: python3-dev) their pure-Python versions run, so this never fails the install
"$VENV/bin/python" -m xfrmd.cext build >/dev/null || true

if [ $# -gt 0 ]; then
  export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
  cd "$here"
  exec "$@"
fi
echo "== done: run '. $VENV/bin/activate' (then: xfrmd serve), or $VENV/bin/xfrmd directly" >&2
