"""The bond's LAG offload models behind one interface: one :class:`LagModel` per value of
``bond.lag_model``, chosen from one table; nothing else switches on the model's name."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from bonding.bond import MODES
from bonding.lag.common import LagModel
from bonding.offload import (LAG_MODELS, MODELS, bond_lag_offload, bond_xfrm_esp_wanted,
                             lag_model_of)

ROOT = Path(__file__).resolve().parent.parent


def test_one_model_per_name_from_one_table():
    assert MODELS == ("off", "replicated", "shared")
    for name, model in LAG_MODELS.items():
        assert isinstance(model, LagModel) and model.name == name
        assert lag_model_of(NS(lag_model=name)) is model


def test_no_switch_on_the_model_name_in_the_offload_code():
    files = [ROOT / "bonding" / "offload.py", *sorted((ROOT / "bonding" / "lag").glob("*.py"))]
    for f in files:
        assert not re.search(r"lag_model\s*[!=]=", f.read_text()), f


def test_capabilities_per_model():
    caps = {name: (m.lag_offload, m.has_lower_handle, m.has_policy_ops, m.has_packet_xmit)
            for name, m in LAG_MODELS.items()}
    assert caps == {"off": (False, False, False, False),
                    "replicated": (True, True, True, False),
                    "shared": (True, True, True, True)}
    assert [bond_lag_offload(NS(lag_model=m)) for m in MODELS] == [False, True, True]


def _wanted(model: str, ab: bool, lag: bool, entering: bool) -> bool | None:
    if model == "off":
        return ab
    if model == "shared":
        return ab or lag
    if ab:
        return True
    if lag:
        return False if entering else None
    return False


@pytest.mark.parametrize("model", ["off", "replicated", "shared"])
def test_esp_wanted_per_model(model):
    """``bond_set_xfrm_features``: off wants ESP in active-backup only; replicated in
    active-backup, cleared on entering LAG and left alone (None) while in LAG; shared in
    active-backup and in LAG-eligible configurations."""
    for mode in MODES:
        for policy in ("layer2", "layer2+3", "layer3+4"):
            for entering in (False, True):
                bond = NS(lag_model=model, mode=mode, xmit_hash_policy=policy)
                ab = mode == "active-backup"
                lag = mode in ("802.3ad", "balance-xor") and policy == "layer3+4"
                assert bond_xfrm_esp_wanted(bond, entering) is _wanted(model, ab, lag, entering)
