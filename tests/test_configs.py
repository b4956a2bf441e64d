"""Every shipped config validates, and the cluster config's profiles match cluster/profiles.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "jobs" / "configs").glob("*.yaml"))


def test_configs_exist():
    assert {"demo.yaml", "cluster.yaml", "pipeline_tiny.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_config_validates(path):
    config = load_config(path)
    profiles = {p.name for p in config.evaluate.profiles}
    for objective in config.search.objectives:
        if objective.name.startswith("latency_ms@"):
            assert objective.name.split("@", 1)[1] in profiles


def test_cluster_config_profiles_match_the_cluster_definitions():
    config = load_config(REPO / "jobs" / "configs" / "cluster.yaml")
    defined = {p["name"]: p for p in yaml.safe_load((REPO / "cluster" / "profiles.yaml").read_text())["profiles"]}
    for profile in config.evaluate.profiles:
        assert profile.name in defined
        assert profile.placement.model_dump() == {
            "labels": defined[profile.name]["placement"].get("labels", {}),
            "resources": defined[profile.name]["placement"].get("resources", {}),
        }


def test_cluster_config_trains_in_bf16_on_its_gpus():
    train = load_config(REPO / "jobs" / "configs" / "cluster.yaml").train
    assert train.use_gpu and train.precision == "bf16"
