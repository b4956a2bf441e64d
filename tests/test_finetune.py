"""Post-processing fine-tuning: early stopping, retraining, ONNX export, Ray Tune trials."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import DataConfig, FinetuneConfig
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet import OFAv2Supernet
from pipeline.supernet.checkpoint import save_supernet
from pipeline.train.finetune import finetune_architecture, run_finetune

DATA = DataConfig(dataset="synthetic", synthetic_images=160, synthetic_classes=4)


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory):
    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("ft_run")
    space = OFAv2Space(stage_widths=(8, 8, 16, 16, 16), resolutions=(16,))
    save_supernet(run_dir / "supernet" / "supernet.pt", OFAv2Supernet(space, num_classes=4))
    return run_dir, space


def test_early_stopping_and_retrain(supernet_run, tmp_path):
    run_dir, space = supernet_run
    arch = space.sample(np.random.default_rng(1))
    epochs_seen = []
    settings = FinetuneConfig(max_epochs=30, patience=1, batch_size=32, lr=0.1, optimizer="sgd")
    row = finetune_architecture(arch, run_dir / "supernet" / "supernet.pt", DATA, settings, tmp_path,
                                report=lambda m: epochs_seen.append(m["epoch"]))
    # patience 1 with a huge learning rate: validation loss must worsen well before 30 epochs
    assert len(epochs_seen) < 30
    assert 1 <= row["best_epochs"] <= len(epochs_seen)
    assert row["onnx_max_abs_diff"] <= 1e-4
    assert (tmp_path / row["arch_id"] / "fp32.onnx").is_file() and row["onnx_path"].endswith("fp32.onnx")
    assert 0.0 <= row["top1"] <= 100.0


def test_tune_trials_write_finetuned_parquet(supernet_run, ray_local):
    run_dir, space = supernet_run
    rng = np.random.default_rng(2)
    archs = [space.sample(rng) for _ in range(2)]
    settings = FinetuneConfig(max_epochs=2, patience=2, batch_size=32, lr=1e-3)
    frame = run_finetune(archs, space=space, run_dir=run_dir, run_id="ft", data=DATA, settings=settings)
    assert sorted(frame["arch_id"]) == sorted(space.arch_id(a) for a in archs)
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    assert (frame["source"] == "finetune").all()
    for path in frame["onnx_path"]:
        assert path.endswith(".onnx")



    on_disk = pd.read_parquet(run_dir / "finetuned.parquet")
    assert {"top1", "params_m", "macs_m", "best_epochs", "onnx_path", "arch"} <= set(on_disk.columns)
    assert len(list((run_dir / "models").glob("*/fp32.onnx"))) == 2


def test_a_resumed_finetune_skips_the_architectures_already_done(supernet_run, ray_local):
    run_dir, space = supernet_run
    rng = np.random.default_rng(2)
    done = [space.sample(rng) for _ in range(2)]  # the architectures the test above fine-tuned
    before = pd.read_parquet(run_dir / "finetuned.parquet").set_index("arch_id")
    extra = space.sample(np.random.default_rng(7))
    settings = FinetuneConfig(max_epochs=2, patience=2, batch_size=32, lr=1e-3)
    frame = run_finetune(done + [extra], space=space, run_dir=run_dir, run_id="ft", data=DATA, settings=settings,
                         resume=True).set_index("arch_id")
    assert (frame["status"] == "ok").all() and len(frame) == 3
    for arch in done:  # not trained again: the very same row (its wall time included)
        key = space.arch_id(arch)
        assert frame.loc[key, "finetune_s"] == before.loc[key, "finetune_s"]
        assert frame.loc[key, "top1"] == before.loc[key, "top1"]
    assert space.arch_id(extra) in frame.index and len(list((run_dir / "models").glob("*/fp32.onnx"))) == 3


def test_joint_exit_finetune_deploys_and_costs_only_the_chosen_exit(supernet_run, tmp_path):
    """The extra heads of joint-exit training are not the subnet: the ONNX graph has one output
    and the row's params_m/macs_m equal what the archive row of the same arch_id holds (the
    evaluator's ``arch_costs`` on the supernet)."""
    import onnx

    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.supernet.costs import arch_costs

    run_dir, space = supernet_run
    arch = dict(space.largest(), exit=3)
    settings = FinetuneConfig(max_epochs=1, patience=1, batch_size=32, lr=1e-3, joint_exits=True)
    row = finetune_architecture(arch, run_dir / "supernet" / "supernet.pt", DATA, settings, tmp_path)
    assert row["joint_exits"] is True and row["arch_id"] == space.arch_id(arch)
    net, _ = load_supernet(run_dir / "supernet" / "supernet.pt")
    archive_costs = arch_costs(net, arch)  # what the search's evaluator writes for this arch_id
    all_exits = arch_costs(net, arch, all_exits=True)
    assert all_exits["params_m"] > archive_costs["params_m"]  # the joint heads would be counted otherwise
    assert row["params_m"] == pytest.approx(archive_costs["params_m"], rel=1e-12)
    assert row["macs_m"] == pytest.approx(archive_costs["macs_m"], rel=1e-12)
    graph = onnx.load(row["onnx_path"]).graph
    assert len(graph.output) == 1
    assert row["onnx_max_abs_diff"] <= 1e-4
