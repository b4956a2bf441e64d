"""The cluster definitions serve every hardware profile: parsed, checked with Ray's own validators.

No Ray is started here: the autoscaler YAML goes through Ray's config schema, the KubeRay manifest
through Ray's KubeRay-to-autoscaler translation, and start_local.sh runs only with --dry-run.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.config import HardwareProfile

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
ENTRYPOINT = "python jobs/run_pipeline.py --config jobs/configs/cluster.yaml"


@pytest.fixture(scope="module")
def profiles() -> list[HardwareProfile]:
    raw = yaml.safe_load((CLUSTER / "profiles.yaml").read_text())
    return [HardwareProfile.model_validate(entry) for entry in raw["profiles"]]


@pytest.fixture(scope="module")
def autoscaler_node_types() -> dict[str, dict[str, Any]]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "autoscaler.yaml").read_text())
    validate_config(config)
    prepared = prepare_config(config)
    validate_config(prepared)
    return prepared["available_node_types"]


@pytest.fixture(scope="module")
def kuberay_docs() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((CLUSTER / "kuberay.yaml").read_text()))


def kuberay_node_types(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node types exactly as Ray's KubeRay autoscaler derives them from a RayCluster spec."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    ray_cr = {"metadata": {"name": "check", "namespace": "default"}, "spec": spec}
    return _derive_autoscaling_config_from_ray_cr(ray_cr)["available_node_types"]


def serves(profile: HardwareProfile, node_type: dict[str, Any]) -> bool:
    """Whether a node of this type satisfies the profile's label selector and resource request."""
    labels = node_type.get("labels", {}) or {}
    resources = node_type.get("resources", {}) or {}
    placement = profile.placement
    label_ok = all(labels.get(key) == value for key, value in placement.labels.items())
    resource_ok = all(resources.get(name, 0) >= amount for name, amount in placement.resources.items())
    cpu_ok = resources.get("CPU", 0) >= profile.num_cpus
    gpu_ok = resources.get("GPU", 0) >= profile.num_gpus
    return label_ok and resource_ok and cpu_ok and gpu_ok


def served_by(profile: HardwareProfile, node_types: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, node_type in node_types.items() if serves(profile, node_type)]


def test_profiles_cover_cluster_and_local_stand_ins(profiles):
    names = [profile.name for profile in profiles]
    assert names == ["cpu_x86", "gpu_t4", "local_all_threads", "local_one_thread"]
    by_name = {profile.name: profile for profile in profiles}
    assert by_name["cpu_x86"].placement.labels == {"hw": "cpu_x86"}
    assert by_name["cpu_x86"].placement.resources == {"latency_cpu_x86": 1.0}
    assert by_name["gpu_t4"].placement.labels == {"hw": "gpu_t4"} and by_name["gpu_t4"].provider == "cuda"
    assert by_name["local_one_thread"].threads == 1 and by_name["local_all_threads"].threads is None


def test_every_profile_is_served_by_the_autoscaler_yaml(profiles, autoscaler_node_types):
    for profile in profiles:
        assert served_by(profile, autoscaler_node_types), f"no node type serves profile {profile.name}"
    assert served_by(profiles[0], autoscaler_node_types) == ["cpu_latency"]
    assert served_by(profiles[1], autoscaler_node_types) == ["gpu_latency"]
    assert served_by(profiles[2], autoscaler_node_types) == ["head"]
    train = [name for name, node in autoscaler_node_types.items() if node["resources"].get("train_gpu")]
    assert train == ["gpu_train"] and autoscaler_node_types["gpu_train"]["resources"]["GPU"] >= 1


def test_check_can_fail(profiles, autoscaler_node_types):
    foreign = profiles[0].model_copy(update={"placement": profiles[0].placement.model_copy(update={"labels": {"hw": "arm64"}})})
    assert served_by(foreign, autoscaler_node_types) == []
    greedy = profiles[1].model_copy(update={"num_gpus": 8.0})
    assert served_by(greedy, autoscaler_node_types) == []


def test_kuberay_cluster_and_job_serve_every_profile(profiles, kuberay_docs):
    kinds = [doc["kind"] for doc in kuberay_docs]
    assert kinds == ["RayCluster", "RayJob"]
    cluster, job = kuberay_docs
    assert all(doc["apiVersion"] == "ray.io/v1" for doc in kuberay_docs)
    assert job["spec"]["entrypoint"] == ENTRYPOINT
    assert job["spec"]["rayClusterSpec"] == cluster["spec"], "the RayJob's cluster must match the RayCluster"
    for spec in (cluster["spec"], job["spec"]["rayClusterSpec"]):
        assert spec["authOptions"]["mode"] == "token"
        node_types = kuberay_node_types(spec)
        for profile in profiles:
            assert served_by(profile, node_types), f"no worker group serves profile {profile.name}"
        assert served_by(profiles[0], node_types) == ["cpu-latency"]
        assert served_by(profiles[1], node_types) == ["gpu-latency"]
        assert node_types["gpu-train"]["resources"]["train_gpu"] == 1
        assert node_types["gpu-train"]["resources"]["GPU"] == 1


def test_same_groups_in_both_definitions(autoscaler_node_types, kuberay_docs):
    def signature(node_types):
        return sorted(
            (tuple(sorted((node.get("labels") or {}).items())),
             tuple(sorted(k for k in node["resources"] if k not in {"CPU", "GPU", "memory"})))
            for node in node_types.values()
        )

    assert signature(autoscaler_node_types) == signature(kuberay_node_types(kuberay_docs[0]["spec"]))


def test_start_local_script_is_loopback_and_serves_local_profiles(profiles):
    script = CLUSTER / "start_local.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "127.0.0.1" in text and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in text and "RAY_AUTH_MODE=token" in text
    result = subprocess.run(
        ["bash", str(script), "--dry-run", "--num-cpus", "2"], capture_output=True, text=True, check=True, timeout=30
    )
    command = result.stdout.splitlines()[0]
    assert command.startswith("would run:") and " start --head " in command
    assert "--node-ip-address=127.0.0.1" in command and "--dashboard-host=127.0.0.1" in command
    assert "ray job submit --address http://127.0.0.1:8265" in result.stdout
    printed = re.search(r"resources (\{.*?\})", result.stdout)
    labels = dict(pair.split("=") for pair in re.search(r"label (\S+)\)", result.stdout).group(1).split(","))
    head = {"labels": labels, "resources": {"CPU": 2, **json.loads(printed.group(1))}}
    local = [profile for profile in profiles if profile.name.startswith("local_")]
    assert len(local) == 2 and all(serves(profile, head) for profile in local)
    assert not serves(profiles[0], head)  # the cluster profiles need their own nodes
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown argument" in bad.stderr
