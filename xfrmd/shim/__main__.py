"""``python3 -m xfrmd.shim build``: compile the preload shim and print its path."""
import sys

from . import ShimError, path


def main() -> int:
    if sys.argv[1:2] not in (["build"], ["path"]):
        print("usage: python3 -m xfrmd.shim build|path", file=sys.stderr)
        return 2
    try:
        print(path(build=sys.argv[1] == "build"))
    except ShimError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


sys.exit(main())
