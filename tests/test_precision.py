"""Mixed precision (``train.precision``, ``evaluate.precision``) on CPU: bf16 autocast trains, fp32 is
the plain path bit for bit, fp16's gradient scaler is used for fp16 alone, and a bf16-trained
supernet still extracts and exports exactly; plus the config's one-line errors.

Networks are tiny (stage widths 8..24, 16 px) so a few optimiser steps take seconds.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.onnx_runtime import ort_session
from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet import OFAv2Supernet
from pipeline.supernet.bn import recalibrate_bn
from pipeline.supernet.export import export_onnx
from pipeline.supernet.precision import FP32, ForwardPrecision
from pipeline.train.distributed import WorkerInfo
from pipeline.train.optim import make_optimizer
from pipeline.train.steps import StepContext, train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(stage_widths=(8, 8, 16, 16, 24), resolutions=(16,))
CPU = WorkerInfo(0, 1, torch.device("cpu"))
CONFIG = load_config(overrides=["train.label_smoothing=0.1"])


def make_net(seed: int = 0, early_exits: bool = True) -> OFAv2Supernet:
    return OFAv2Supernet(OFAv2Space(early_exits=early_exits, **TINY), num_classes=4, seed=seed)


def fixed_batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=generator), torch.randint(0, 4, (n,), generator=generator)


def sampled_archs(space: OFAv2Space, steps: int, per_step: int) -> list[list[dict]]:
    rng = np.random.default_rng(3)
    return [[space.sample(rng) for _ in range(per_step)] for _ in range(steps)]


def run_train_steps(net: OFAv2Supernet, archs: list[list[dict]], precision: ForwardPrecision = FP32,
                    full_phase: bool = False, scaler=None) -> list[float]:
    """``train_step`` on one fixed batch, each step with its own subnets."""
    images, labels = fixed_batch()
    ctx = StepContext(net, make_optimizer(net, CONFIG), CONFIG.train, CPU, precision=precision,
                      scaler=scaler if scaler is not None else precision.grad_scaler())
    return [train_step(ctx, step_archs, images, labels, 0.05, full_phase, use_board=False, meta_step=False)
            for step_archs in archs]


def reference_fp32_steps(net: OFAv2Supernet, archs: list[list[dict]], full_phase: bool = False) -> None:
    """The plain fp32 step written out without any of the precision machinery: set the learning
    rate, sum the subnets' gradients (label-smoothed CE, or the exits' weighted CEs), step."""
    images, labels = fixed_batch()
    optimizer = make_optimizer(net, CONFIG)
    smoothing, weights = CONFIG.train.label_smoothing, CONFIG.train.exit_weights
    for step_archs in archs:
        for group in optimizer.param_groups:
            group["lr"] = 0.05
        optimizer.zero_grad(set_to_none=True)
        net.train()
        for arch in step_archs:
            net.set_active(arch)
            if full_phase:
                loss = sum(w * F.cross_entropy(z, labels, label_smoothing=smoothing)
                           for w, z in zip(weights, net.forward_exits(images)))
            else:
                loss = F.cross_entropy(net(images), labels, label_smoothing=smoothing)
            loss.backward()
        optimizer.step()


@pytest.mark.parametrize("full_phase", [False, True], ids=["sampled_subnets", "full_phase_exits"])
def test_fp32_training_is_bit_identical_to_the_plain_path(full_phase):
    space = make_net().space
    archs = [[space.largest()]] * 3 if full_phase else sampled_archs(space, 3, 2)
    trained = {}
    for name, run in [("reference", lambda net: reference_fp32_steps(net, archs, full_phase)),
                      ("default", lambda net: run_train_steps(net, archs, full_phase=full_phase)),
                      ("fp32", lambda net: run_train_steps(net, archs, ForwardPrecision.on("fp32", "cpu"),
                                                           full_phase))]:
        net = make_net()
        torch.manual_seed(7)  # dropout draws the same masks in every run
        run(net)
        trained[name] = net.state_dict()
    reference = trained.pop("reference")
    for name, state in trained.items():
        assert all(torch.equal(state[key], reference[key]) for key in reference), name
    assert not torch.equal(reference["stem.0.weight"], make_net().state_dict()["stem.0.weight"])


def test_fp32_adds_no_autocast_context():
    assert isinstance(FP32.autocast(), contextlib.nullcontext)
    assert FP32.grad_scaler() is None and not FP32.channels_last
    x = torch.randn(2, 3, 8, 8)
    assert FP32.prepare_batch(x) is x


def test_bf16_autocast_trains_a_supernet_on_cpu():
    net = make_net()
    dtypes = []
    net.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    torch.manual_seed(0)
    losses = run_train_steps(net, [[net.space.largest()]] * 8, ForwardPrecision.on("bf16", "cpu"))
    assert set(dtypes) == {torch.bfloat16}  # the forward ran under autocast...
    assert all(p.dtype == torch.float32 for p in net.parameters())  # ...on float32 master weights
    assert np.isfinite(losses).all()
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses


@pytest.fixture(scope="module")
def bf16_trained_net() -> OFAv2Supernet:
    """A supernet trained a few bf16 steps on sampled subnets, BN recalibrated on the largest."""
    net = make_net(early_exits=True)
    torch.manual_seed(0)
    run_train_steps(net, sampled_archs(net.space, 4, 2), ForwardPrecision.on("bf16", "cpu"))
    recalibrate_bn(net, [fixed_batch(8, seed)[0] for seed in range(3)], arch=net.space.largest())
    return net.eval()


@torch.no_grad()
def test_bf16_trained_supernet_extracts_exactly(bf16_trained_net):
    net = bf16_trained_net
    x = fixed_batch(3, 5)[0]
    rng = np.random.default_rng(4)
    for arch in [net.space.largest(), net.space.smallest(), *[net.space.sample(rng) for _ in range(3)]]:
        net.set_active(arch)
        expected = net(x)
        assert float(expected.std()) > 1e-4
        assert float((net.extract(arch)(x) - expected).abs().max()) <= 1e-5
        exits = net.extract(arch, all_exits=True)(x)
        assert max(float((a - b).abs().max()) for a, b in zip(exits, net.forward_exits(x))) <= 1e-5


def test_bf16_trained_subnet_exports_to_onnx_exactly(bf16_trained_net, tmp_path):
    arch = bf16_trained_net.space.sample(np.random.default_rng(2))
    subnet = bf16_trained_net.extract(arch)
    path = export_onnx(subnet, tmp_path / "subnet.onnx", resolution=16, batch_size=2)
    session = ort_session(path, "cpu", threads=1)
    x = fixed_batch(2, 9)[0]
    produced = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = subnet(x).numpy()
    assert np.abs(expected).max() > 1e-3
    assert np.abs(produced - expected).max() <= 1e-4


class RecordingScaler(torch.amp.GradScaler):
    """A real gradient scaler that records every construction and call."""

    made: list[str] = []

    def __init__(self, device: str = "cuda", *args, **kwargs) -> None:
        RecordingScaler.made.append(device)
        self.calls: list[str] = []
        super().__init__(device, *args, **kwargs)

    def scale(self, outputs):
        self.calls.append("scale")
        return super().scale(outputs)

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("step")
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls.append("update")
        return super().update(new_scale)


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")
def test_gradient_scaler_is_made_for_fp16_alone(monkeypatch):
    monkeypatch.setattr(torch.amp, "GradScaler", RecordingScaler)
    RecordingScaler.made = []
    for name, device in [("fp32", "cpu"), ("bf16", "cpu"), ("fp32", "cuda"), ("bf16", "cuda")]:
        assert ForwardPrecision(name, device).grad_scaler() is None
    assert RecordingScaler.made == []
    assert isinstance(ForwardPrecision("fp16", "cuda").grad_scaler(), RecordingScaler)
    assert RecordingScaler.made == ["cuda"]


def test_fp16_steps_go_through_the_scaler(monkeypatch):
    """fp16 is refused on CPUs; lifting that check here runs the real fp16 step (CPU autocast
    does float16, slowly) to show its backward and optimiser step go through the scaler."""
    monkeypatch.setattr(torch.amp, "GradScaler", RecordingScaler)
    monkeypatch.setattr(ForwardPrecision, "__post_init__", lambda self: None)
    net = make_net()
    fp16 = ForwardPrecision("fp16", "cpu")
    scaler = fp16.grad_scaler()
    assert isinstance(scaler, RecordingScaler)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(0)
    losses = run_train_steps(net, sampled_archs(net.space, 1, 2), fp16, scaler=scaler)
    assert scaler.calls == ["scale", "scale", "step", "update"]
    assert np.isfinite(losses).all()
    assert not torch.equal(before["stem.0.weight"], net.state_dict()["stem.0.weight"])


def test_fp16_on_cpu_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device") as error:
        ForwardPrecision.on("fp16", "cpu")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.precision=fp8"], "config: 'train.precision': Input should be 'fp32', 'bf16' or 'fp16'"),
    (["train.precision=fp16"], "config: 'train.precision': Value error, fp16 needs use_gpu: true"),
    (["evaluate.precision=half"], "config: 'evaluate.precision': Input should be"),
    (["evaluate.precision=fp16"], "config: 'evaluate.precision': Value error, fp16 is for CUDA"),
])
def test_bad_precision_is_one_config_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=overrides)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_fp16_fine_tuning_on_cpu_is_refused_before_ray_starts():
    from pipeline.preflight import check_pipeline_inputs

    config = load_config(overrides=["data.dataset=synthetic", "train.use_gpu=true", "train.precision=fp16"])
    with pytest.raises(ConfigError, match=r"^config: 'train.precision': fp16 needs a GPU and fine-tuning runs on CPU"):
        check_pipeline_inputs(config, ["finetune"])
    check_pipeline_inputs(config.model_copy(update={"finetune": config.finetune.model_copy(
        update={"use_gpu": True})}), ["finetune"])


def test_precision_defaults_and_accepted_values():
    assert CONFIG.train.precision == "fp32" and CONFIG.evaluate.precision == "fp32"
    config = load_config(overrides=["train.precision=bf16", "evaluate.precision=bf16"])
    assert (config.train.precision, config.evaluate.precision) == ("bf16", "bf16")
    assert load_config(overrides=["train.use_gpu=true", "train.precision=fp16"]).train.precision == "fp16"


def test_evaluator_measures_top1_under_bf16_and_recalibrates_in_fp32(tmp_path):
    """``evaluate.precision: bf16``: the actor's top-1 passes run under autocast (their logits are
    bf16) and equal a direct bf16 computation; BN recalibration is fp32, so the statistics equal an
    fp32 evaluator's exactly."""
    from pipeline.evaluate.actors import AccuracyWorker
    from pipeline.supernet.checkpoint import save_supernet

    path = tmp_path / "supernet.pt"
    save_supernet(path, make_net(early_exits=False))
    workers = {}
    for name in ("fp32", "bf16"):
        config = load_config(overrides=[
            "data.dataset=synthetic", "data.synthetic_images=120", "data.synthetic_classes=4",
            "evaluate.calibration_images=24", "evaluate.calibration_batch_size=8", "evaluate.eval_batch_size=16",
            f"evaluate.precision={name}"])
        workers[name] = AccuracyWorker(str(path), config.data.model_dump(), 0, config.evaluate.model_dump())
    assert workers["bf16"].scorer.precision == ForwardPrecision("bf16", "cpu")
    dtypes: dict[str, list[torch.dtype]] = {"fp32": [], "bf16": []}
    for name, worker in workers.items():  # top-1 calls the network; recalibration calls forward_exits
        worker.net.register_forward_hook(lambda module, inputs, output, name=name: dtypes[name].append(output.dtype))
    arch = make_net(early_exits=False).space.sample(np.random.default_rng(5))
    top1 = {name: worker.run(arch)["metrics"]["top1"] for name, worker in workers.items()}
    assert set(dtypes["fp32"]) == {torch.float32} and set(dtypes["bf16"]) == {torch.bfloat16}
    fp32_net, bf16_net = workers["fp32"].net, workers["bf16"].net
    for (key, a), b in zip(fp32_net.state_dict().items(), bf16_net.state_dict().values()):
        assert torch.equal(a, b), key  # same recalibrated statistics
    _, val = workers["bf16"].scorer.inputs(arch["resolution"])
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = bf16_net.eval()(val)
    direct = 100.0 * float((logits.float().argmax(1) == workers["bf16"].scorer.val_labels).double().mean())
    assert top1["bf16"] == pytest.approx(direct)
    assert 0.0 <= top1["fp32"] <= 100.0


def test_bf16_fine_tuning_autocasts_its_training_and_exports_an_exact_fp32_model(tmp_path, monkeypatch):
    from pipeline.config import DataConfig, FinetuneConfig
    from pipeline.supernet.checkpoint import save_supernet
    from pipeline.train.finetune import finetune_architecture

    used: list[str] = []
    original = ForwardPrecision.autocast
    monkeypatch.setattr(ForwardPrecision, "autocast", lambda self: used.append(self.name) or original(self))
    path = tmp_path / "supernet.pt"
    net = make_net(early_exits=False)
    save_supernet(path, net)
    settings = FinetuneConfig(max_epochs=2, patience=1, batch_size=32, lr=0.01, optimizer="sgd")
    row = finetune_architecture(net.space.sample(np.random.default_rng(1)), path,
                                DataConfig(dataset="synthetic", synthetic_images=96, synthetic_classes=4),
                                settings, tmp_path / "models", precision="bf16")
    assert used and set(used) == {"bf16"}
    assert row["onnx_max_abs_diff"] <= 1e-4 and 0.0 <= row["top1"] <= 100.0


def test_bf16_adaptation_autocasts_and_republishes(tmp_path, monkeypatch):
    from pipeline.supernet.checkpoint import adaptation_round, load_supernet, save_supernet
    from pipeline.train.adapt import adapt_supernet

    used: list[str] = []
    original = ForwardPrecision.autocast
    monkeypatch.setattr(ForwardPrecision, "autocast", lambda self: used.append(self.name) or original(self))
    config = load_config(overrides=[
        "data.dataset=synthetic", "data.synthetic_images=64", "data.synthetic_classes=4", "data.batch_size=16",
        "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16]", "train.precision=bf16",
        "train.calibration_images=16", "train.threads_per_worker=1",
        "search.adaptation.steps_per_epoch=2", "search.adaptation.num_workers=0"])
    net = OFAv2Supernet(OFAv2Space(**TINY), num_classes=4, seed=0)
    save_supernet(tmp_path / "supernet" / "supernet.pt", net)
    archs = sampled_archs(net.space, 1, 3)[0]
    metrics = adapt_supernet(config, tmp_path, archs)
    assert set(used) == {"bf16"} and np.isfinite(metrics["loss"])
    adapted, extra = load_supernet(tmp_path / "supernet" / "supernet.pt")
    assert adaptation_round(extra) == 1
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in adapted.parameters())
    assert not torch.equal(adapted.state_dict()["stem.0.weight"], net.state_dict()["stem.0.weight"])
