"""The Charon and Pluto helpers take each daemon's own config keys (swanctl.conf for charon,
ipsec.conf's conn section for pluto, `_` for `-`); pluto's old `conn_type` still works as a
deprecated alias of `type`. What is asserted is the config text the daemon reads."""
from __future__ import annotations

import inspect

import pytest

from xfrmd.ike import charon, pluto


def test_pluto_conn_keys_are_ipsec_conf_keys():
    opts = pluto.conn_options({"type": "transport", "nic_offload": "packet", "esp": "aes_gcm128",
                               "salifetime": 300, "replay_window": 64, "ike": None})
    text = pluto.conn_text("192.0.2.1", "192.0.2.2", "ikev2=yes", opts)
    assert text == ("conn peer\n\tauthby=secret\n\tleft=192.0.2.1\n\tright=192.0.2.2\n"
                    "\tleftupdown=/bin/true\n\tikev2=yes\n\tike=aes128-sha2_256-modp2048\n"
                    "\tesp=aes_gcm128\n\ttype=transport\n\tnic-offload=packet\n\tauto=ignore\n"
                    "\tsalifetime=300s\n\treplay-window=64\n")


def test_pluto_conn_type_is_a_deprecated_alias_of_type():
    with pytest.warns(DeprecationWarning, match=r"use type=…, ipsec.conf's own key"):
        assert pluto.conn_options({"type": None, "conn_type": "transport"}) == \
            {"type": "transport"}
    with pytest.raises(TypeError, match="not both"), pytest.warns(DeprecationWarning):
        pluto.conn_options({"type": "tunnel", "conn_type": "transport"})
    params = inspect.signature(pluto.Pluto).parameters
    assert "type" in params and "nic_offload" in params and "conn_type" not in params


def test_charon_child_keys_are_swanctl_keys():
    text = charon.child_section("ch", {"mode": "transport", "hw_offload": "packet",
                                       "rekey_time": 60, "life_time": "2m",
                                       "replay_window": 128, "limits": {"x": 1}},
                                {"life_bytes": 8000})
    assert text == ("      ch {\n        mode = transport\n        hw_offload = packet\n"
                    "        rekey_time = 60s\n        life_time = 2m\n"
                    "        replay_window = 128\n        life_bytes = 8000\n      }")
    params = inspect.signature(charon.Charon).parameters
    for key in ("mode", "hw_offload", "esp_proposals", "proposals", "rekey_time", "life_time"):
        assert key in params
