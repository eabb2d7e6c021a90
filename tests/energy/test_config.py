"""`[[loadpoints]]` in a real TOML file: every mistake named precisely, nothing started on a guess."""

from __future__ import annotations

import pytest

from supervisor.config import ConfigError, load_config
from supervisor.tree import check_config, root_spec

GOOD = """
data_dir = "{data}"
energy_main_fuse_a = 25
[[devices]]
id = "meter"
profile = "eastron_sdm630"
host = "127.0.0.1"
port = 5020
[[loadpoints]]
id = "garage"
charger = "CP1"
grid_meter = "meter"
phases = "switchable"
"""


def test_a_good_loadpoint_starts_the_energy_actor_with_its_settings(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD.format(data=tmp_path / "data"))
    config = load_config(path, env={})
    check_config(config, data_dir=False)
    energy = next(c for c in root_spec(config).children if c.name == "energy")
    assert energy.config["loadpoints"][0]["phases"] == "switchable" and energy.config["settings"]["main_fuse_a"] == 25.0
    without = load_config(None, env={}, overrides={"data_dir": str(tmp_path / "data")})
    assert "energy" not in [c.name for c in root_spec(without).children]  # no loadpoints, no process spent on them


@pytest.mark.parametrize(("entry", "error"), [
    ('id = "g"\ncharger = "CP1"\ngrid_meter = "metre"', "loadpoints[0] (g).grid_meter: no device 'metre' is configured (devices: meter)"),
    ('id = "g"\ncharger = "CP1"\ngrid_meter = "meter"\nmin_current = 3', "loadpoints[0] (g).min_current: must be a number in 6..80, got 3"),
    ('id = "g"\ncharger = "CP1"\ngrid_meter = "meter"\nmax_current = 8\nmin_current = 10', "loadpoints[0] (g).max_current: must be at least min_current (10), got 8"),
    ('id = "g"\ncharger = "CP1"\ngrid_meter = "meter"\nphases = 2', "loadpoints[0] (g).phases: must be 1, 3 or \"switchable\", got 2"),
    ('id = "g"\ncharger = "CP1"\ngrid_meter = "meter"\nmode = "turbo"', "loadpoints[0] (g).mode: must be one of off, now, minpv, pv, got 'turbo'"),
    ('id = "g"\ncharger = "CP1"\nmode = "pv"', "loadpoints[0] (g).mode: mode 'pv' needs a surplus to follow: set grid_meter, or pv and loads (the other measured loads)"),
    ('id = "g"\ncharger = "CP1"\ngrid_meter = "meter"\nsurplus = 1', "loadpoints[0] (g).surplus: unknown field"),
    ('charger = "CP1"', "loadpoints[0].id: required: 1 to 64 of A-Z a-z 0-9 _ . -, got None"),
])
def test_each_mistake_is_named_with_its_file_entry_and_field(tmp_path, entry, error):
    path = tmp_path / "gateway.toml"
    path.write_text(GOOD.split("[[loadpoints]]")[0].format(data=tmp_path / "data") + "[[loadpoints]]\n" + entry + "\n")
    config = load_config(path, env={})
    with pytest.raises(ConfigError) as failed:
        check_config(config, data_dir=False)
    assert any(line.startswith(f"{path}: {error}") for line in failed.value.errors), failed.value.errors


def test_the_energy_settings_are_checked(tmp_path):
    config = load_config(None, env={"EGW_ENERGY_INTERVAL": "0.1", "EGW_ENERGY_MAIN_FUSE_A": "3"}, overrides={"data_dir": str(tmp_path)})
    with pytest.raises(ConfigError) as failed:
        check_config(config, data_dir=False)
    assert "EGW_ENERGY_INTERVAL: energy_interval: must be between 1 and 300 seconds, got 0.1" in failed.value.errors
    assert "EGW_ENERGY_MAIN_FUSE_A: energy_main_fuse_a: must be 0 (no limit) or between 6 and 1000 A, got 3.0" in failed.value.errors
