"""The deploy bundle of a fine-tuned subnet: fp32 and INT8 ONNX files and a card of measured figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import DataConfig, EvaluateConfig, FinetuneConfig, HardwareProfile
from pipeline.data import load_splits_from_config
from pipeline.deploy_bundle import CARD_FILE, FP32_FILE, deploy, deployed_file, int8_file
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet import OFAv2Supernet
from pipeline.supernet.checkpoint import save_supernet
from pipeline.train.files import TrainFiles
from pipeline.train.finetune import finetune_architecture, run_finetune

DATA = DataConfig(dataset="synthetic", synthetic_images=240, synthetic_classes=4)
FAST = {"warmup": 1, "repeats": 5, "max_repeats": 5}
EVALUATE = EvaluateConfig(calibration_images=64, profiles=[
    HardwareProfile(name="cpu_fp32", threads=1, **FAST),
    HardwareProfile(name="cpu_int8", threads=1, precision="int8", calibration_images=64, **FAST),
    HardwareProfile(name="gpu_fp16", provider="cuda", threads=1, precision="fp16", **FAST),
])
SETTINGS = FinetuneConfig(max_epochs=6, patience=6, batch_size=32, lr=0.05, optimizer="sgd", joint_exits=False)


@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory):
    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("deploy_run")
    space = OFAv2Space(stage_widths=(8, 8, 16, 16, 16), resolutions=(16,))
    save_supernet(run_dir / "supernet" / "supernet.pt", OFAv2Supernet(space, num_classes=4))
    return run_dir, space


@pytest.fixture(scope="module")
def bundled(supernet_run, tmp_path_factory):
    """One tiny subnet fine-tuned without Ray, its bundle in a models folder."""
    run_dir, space = supernet_run
    models = tmp_path_factory.mktemp("models")
    arch = space.sample(np.random.default_rng(3))
    row = finetune_architecture(arch, run_dir / "supernet" / "supernet.pt", DATA, SETTINGS, models,
                                evaluate=EVALUATE, deploy=deploy)
    return row, models / row["arch_id"], arch


def _ort_logits(path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[-1]


def _card_inputs(card: dict, images_uint8: torch.Tensor) -> np.ndarray:
    """The images as the card says the model takes them, computed here without the bundle's code."""
    resolution = card["input"]["resolution"]
    assert card["input"]["crop"] == 1.0, "digits are evaluated on the whole image"
    x = images_uint8.to(torch.float32) / 255.0
    x = (x - torch.tensor(card["input"]["mean"]).view(1, 3, 1, 1)) / torch.tensor(card["input"]["std"]).view(1, 3, 1, 1)
    if x.shape[-1] != resolution:
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                                            antialias=True)
    return x.numpy().astype(np.float32)


def test_the_fp32_file_name_is_the_one_training_files_name():
    from pipeline.train import finetune

    assert finetune.FP32_FILE == FP32_FILE and TrainFiles("r").model("a").name == FP32_FILE


def test_the_bundle_holds_both_models_and_the_card(bundled):
    row, folder, arch = bundled
    assert (folder / FP32_FILE).is_file() and (folder / int8_file("cpu_int8")).is_file()
    assert row["onnx_path"] == str(folder / FP32_FILE) and row["bundle_dir"] == str(folder)
    card = json.loads((folder / CARD_FILE).read_text())
    assert row["card_path"] == str(folder / CARD_FILE)
    assert card["arch_id"] == row["arch_id"] and card["arch"]["resolution"] == arch["resolution"]
    assert card["input"]["layout"] == "NCHW" and card["input"]["resolution"] == 16
    assert card["num_classes"] == 4 and card["class_names"] == [f"class_{i}" for i in range(4)]
    assert card["timed_on"]["hostname"]
    fp32, int8 = card["models"]["fp32"], card["models"]["int8@cpu_int8"]
    assert set(fp32["latency"]) == {"cpu_fp32", "cpu_int8", "gpu_fp16"} and set(int8["latency"]) == {"cpu_int8"}
    assert int8["latency"]["cpu_int8"]["median_ms"] > 0 and int8["calibration"]["images"] == 64
    assert row["latency_ms@cpu_int8"] == int8["latency"]["cpu_int8"]["median_ms"]
    assert row["latency_fp32_ms@cpu_int8"] == fp32["latency"]["cpu_int8"]["median_ms"]
    assert row["latency_ms@cpu_fp32"] == fp32["latency"]["cpu_fp32"]["median_ms"]


def test_the_int8_model_agrees_with_fp32_on_the_calibration_images(bundled):
    row, folder, _ = bundled
    card = json.loads((folder / CARD_FILE).read_text())
    splits = load_splits_from_config(DATA, seed=0)
    # the calibration rule: the first 64 of a permutation of the training split drawn with the seed
    chosen = torch.randperm(len(splits.train_images), generator=torch.Generator().manual_seed(0))[:64]
    images = _card_inputs(card, splits.train_images[chosen])
    fp32 = _ort_logits(folder / FP32_FILE, images).argmax(1)
    int8 = _ort_logits(folder / int8_file("cpu_int8"), images).argmax(1)
    assert np.mean(fp32 == int8) >= 0.95


def test_the_card_holds_the_figures_onnx_runtime_measures(bundled, supernet_run):
    row, folder, arch = bundled
    card = json.loads((folder / CARD_FILE).read_text())
    splits = load_splits_from_config(DATA, seed=0)
    assert card["eval_split"] == "test" and len(splits.test_images) == card["eval_images"]
    images, labels = _card_inputs(card, splits.test_images), splits.test_labels.numpy()
    fp32 = _ort_logits(folder / FP32_FILE, images).argmax(1)
    int8 = _ort_logits(folder / int8_file("cpu_int8"), images).argmax(1)
    assert card["models"]["fp32"]["test_top1"] == pytest.approx(100 * np.mean(fp32 == labels), abs=1e-9)
    assert card["models"]["int8@cpu_int8"]["test_top1"] == pytest.approx(100 * np.mean(int8 == labels), abs=1e-9)
    agreement = card["models"]["int8@cpu_int8"]["parity"]["top1_agreement_with_fp32_pct"]
    assert agreement == pytest.approx(100 * np.mean(fp32 == int8), abs=1e-9)
    assert row["test_top1@cpu_fp32"] == card["models"]["fp32"]["test_top1"]
    assert row["test_top1@cpu_int8"] == row["int8_top1@cpu_int8"] == card["models"]["int8@cpu_int8"]["test_top1"]
    # the torch-side top-1 of the same fine-tuned weights is the row's "top1": the fp32 file must match it
    assert row["top1"] == pytest.approx(card["models"]["fp32"]["test_top1"], abs=100 / len(labels) + 1e-9)


def test_the_fp32_parity_is_the_one_measured_against_torch(bundled):
    """Recompute max |ORT - torch| on the card's seeded probe with the subnet re-exported from the fp32 file."""
    import onnx
    from onnx import numpy_helper

    row, folder, _ = bundled
    card = json.loads((folder / CARD_FILE).read_text())
    diff = card["models"]["fp32"]["parity"]["max_abs_logit_diff_vs_torch"]
    assert row["onnx_max_abs_diff"] == diff and 0 <= diff <= 1e-4
    model = onnx.load(str(folder / FP32_FILE))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a free batch axis
    assert any(numpy_helper.to_array(t).size for t in model.graph.initializer)


def test_tune_trials_write_the_bundle_columns(supernet_run, ray_local):
    run_dir, space = supernet_run
    arch = space.sample(np.random.default_rng(5))
    settings = FinetuneConfig(max_epochs=1, patience=1, batch_size=32, lr=1e-3, joint_exits=False)
    frame = run_finetune([arch], space=space, run_dir=run_dir, run_id="deploy", data=DATA, settings=settings,
                         evaluate=EVALUATE, deploy=deploy)
    assert (frame["status"] == "ok").all(), frame["error"].tolist()
    on_disk = pd.read_parquet(TrainFiles(run_dir).finetuned)
    expected = {"top1", "params_m", "onnx_path", "onnx_max_abs_diff", "bundle_dir", "card_path", "timed_on",
                "test_top1_fp32", "test_top1@cpu_fp32", "test_top1@cpu_int8", "latency_ms@cpu_fp32",
                "latency_ms@cpu_int8", "latency_fp32_ms@cpu_int8", "int8_agreement@cpu_int8"}
    assert expected <= set(on_disk.columns)
    bundle = TrainFiles(run_dir).bundle(space.arch_id(arch))
    assert on_disk.loc[0, "onnx_path"] == str(TrainFiles(run_dir).model(space.arch_id(arch)))
    assert (bundle / CARD_FILE).is_file() and (bundle / int8_file("cpu_int8")).is_file()
    assert on_disk.loc[0, "latency_ms@cpu_int8"] > 0


def test_the_report_shows_fp32_against_int8_only_with_an_int8_profile(supernet_run, tmp_path):
    """Runs after the Tune test above, which wrote finetuned.parquet with an int8 profile."""
    from pipeline.atomic import write_parquet_atomic
    from pipeline.report import render_report, write_report

    run_dir, _ = supernet_run
    rows = pd.read_parquet(TrainFiles(run_dir).finetuned)
    page = write_report(run_dir).read_text()
    assert "fp32 against INT8" in page and (run_dir / "plots" / "precision.png").is_file()
    for _, row in rows.iterrows():
        ratio = row["latency_ms@cpu_int8"] / row["latency_fp32_ms@cpu_int8"]
        for value in (row["test_top1_fp32"], row["int8_top1@cpu_int8"], row["latency_ms@cpu_int8"],
                      row["latency_fp32_ms@cpu_int8"], ratio, row["test_top1_fp32"] - row["int8_top1@cpu_int8"]):
            assert f"<td class=\"\">{value:.4g}</td>" in page, value
    fp32_only = tmp_path / "fp32_run"
    write_parquet_atomic(rows[[c for c in rows.columns if "int8" not in c]], TrainFiles(fp32_only).finetuned)
    assert "fp32 against INT8" not in render_report(fp32_only)


def test_a_cuda_fp16_profile_gets_its_converted_file_measured_and_its_latency_marked_skipped(bundled):
    import onnx
    import onnxruntime as ort

    row, folder, _ = bundled
    card = json.loads((folder / CARD_FILE).read_text())
    fp16 = card["models"]["fp16@gpu_fp16"]
    path = folder / deployed_file("gpu_fp16", "fp16")
    assert fp16["file"] == path.name and path.is_file()
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in onnx.load(str(path)).graph.initializer}
    splits = load_splits_from_config(DATA, seed=0)
    images, labels = _card_inputs(card, splits.test_images), splits.test_labels.numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    predicted = session.run(None, {session.get_inputs()[0].name: images})[0].argmax(1)
    assert fp16["test_top1"] == pytest.approx(100 * np.mean(predicted == labels), abs=1e-9)
    assert row["fp16_top1@gpu_fp16"] == row["test_top1@gpu_fp16"] == fp16["test_top1"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():  # this machine: no GPU
        assert "CUDAExecutionProvider" in fp16["latency"]["gpu_fp16"]["skipped"]
        assert np.isnan(row["latency_ms@gpu_fp16"])
