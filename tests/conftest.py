"""Shared fixtures. ``xfrmd.testing`` provides xfrmd_server / xfrmd_trio_server."""
import os

import pytest

pytest_plugins = ["xfrmd.testing"]

IN_CI = os.environ.get("CI") == "true"


def require(condition: bool, why: str) -> None:
    """Skip on a developer's machine when a tool is missing; fail in CI (never skip there)."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {why}")
    pytest.skip(why)


@pytest.fixture
def kernel():
    """A fresh sans-IO kernel on a manual clock, with the `bare` namespace layout."""
    from xfrmd.clock import ManualClock
    from xfrmd.kernel import Kernel
    topo = None
    try:
        from xfrmd.topology import load_topology
        topo = load_topology("bare")
    except ImportError:
        pass
    return Kernel(ManualClock(), topology=topo, seed=1)
