"""Progressive shrinking's mechanisms, each checked against the papers' numbers (docs/methods.md), not the code's reading.

- the dynamic teacher is the previous phase's *best* checkpoint (validation top-1 of the max
  subnet), with BN recalibrated on the calibration images;
- width re-organisation runs at the start of every expand part, before its first step;
- the optimiser: SGD with Nesterov momentum 0.9, weight decay 3e-5 except on BN and biases;
  the loss is label-smoothed (0.1);
- the default phase table: every part's k, learning rate and choices;
- exit heads: 1x1 conv to 6C (BN, h-swish), pool, 1x1 conv to 8C, linear.

The loop is instrumented by wrapping its own functions (``monkeypatch``), so the assertions see
what the real training run did.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import PipelineConfig, TrainConfig, load_config
from pipeline.data import eval_transform
from pipeline.space.ofav2 import OFAv2Space, sample_arch
from pipeline.supernet import OFAv2Supernet
from pipeline.train.schedule import build_plan

TINY = [
    "data.dataset=synthetic", "data.synthetic_images=64", "data.synthetic_classes=4", "data.batch_size=16",
    "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]",
    "train.epochs_scale=0.005", "train.steps_per_epoch=1", "train.eval_subnets=0",
    "train.calibration_images=32", "train.eval_images=16", "train.num_workers=0", "train.threads_per_worker=1",
    "train.distillation=dynamic",
    # full: 2 epochs (so its best epoch can differ from its last), then one epoch per part
    "train.phases=[{name: full, parts: [{epochs: 400, lr: 0.05}]}, {name: kernel, parts: [{epochs: 200, lr: 0.01}]},"
    "{name: depth, parts: [{epochs: 200, lr: 0.01, subnets_per_step: 2}]},"
    "{name: expand, parts: [{epochs: 200, lr: 0.01, subnets_per_step: 2, choices: [4, 6]},"
    "{epochs: 200, lr: 0.01, subnets_per_step: 2}]}]",
]
SCRIPTED_TOP1_MAX = {0: 90.0, 1: 10.0}  # global epoch (0-based) -> top-1 of the max subnet


@pytest.fixture(scope="module")
def instrumented_run(tmp_path_factory):
    """A real tiny run with the loop's teacher builder, evaluation, publishing and width
    re-organisation wrapped to record what happened."""
    import pipeline.train.loop as loop
    from pipeline.train import train_supernet

    record = {"events": [], "states": {}, "teachers": []}
    original_evaluate = loop.SupernetTrainer.evaluate
    original_run_epoch = loop.SupernetTrainer.run_epoch
    original_publish = loop.publish_epoch
    original_build_teacher = loop.build_teacher
    original_reorganize = OFAv2Supernet.reorganize_channels

    def evaluate(self, part):
        scores = original_evaluate(self, part)
        epoch = self.state.global_epoch
        if epoch in SCRIPTED_TOP1_MAX:  # the full phase's first epoch is its best, not its last
            scores["top1_max"] = SCRIPTED_TOP1_MAX[epoch]
        return scores

    def run_epoch(self, part):
        record["events"].append(("epoch", part.label))
        return original_run_epoch(self, part)

    def publish_epoch(run_dir, net, history, extra):
        record["states"][extra["epoch"]] = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return original_publish(run_dir, net, history, extra)

    def build_teacher(source_state, space, num_classes, view, **options):
        teacher = original_build_teacher(source_state, space, num_classes, view, **options)
        record["teachers"].append({"source": {k: v.clone() for k, v in source_state.items()},
                                   "teacher": teacher, "view": view, "space": space})
        return teacher

    def reorganize_channels(self):
        record["events"].append(("reorganize", None))
        return original_reorganize(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop.SupernetTrainer, "evaluate", evaluate)
        patch.setattr(loop.SupernetTrainer, "run_epoch", run_epoch)
        patch.setattr(loop, "publish_epoch", publish_epoch)
        patch.setattr(loop, "build_teacher", build_teacher)
        patch.setattr(OFAv2Supernet, "reorganize_channels", reorganize_channels)
        train_supernet(load_config(overrides=TINY), tmp_path_factory.mktemp("mechanisms"))
    return record


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_dynamic_teacher_is_the_previous_phases_best_checkpoint(instrumented_run):
    teachers = instrumented_run["teachers"]
    states = instrumented_run["states"]  # published after epochs 1..6 (1-based)
    assert len(teachers) == 3  # at the start of kernel, depth and expand
    kernel_teacher = teachers[0]["source"]
    assert _same_state(kernel_teacher, states[1])  # full's best epoch (top-1 90) ...
    assert not _same_state(kernel_teacher, states[2])  # ... not its last (top-1 10)
    assert _same_state(teachers[1]["source"], states[3])  # kernel had one epoch
    assert _same_state(teachers[2]["source"], states[4])  # depth had one epoch


@torch.no_grad()
def test_dynamic_teacher_has_its_batchnorm_recalibrated(instrumented_run):
    built = instrumented_run["teachers"][0]
    teacher, view, space = built["teacher"], built["view"], built["space"]
    assert isinstance(teacher(torch.zeros(1, 3, 20, 20)), tuple)  # early-exit supernet: the all-exit network
    resolution = space.largest()["resolution"]
    images = eval_transform(view.calibration_images, view.mean, view.std, resolution)
    stem_conv, stem_bn = teacher.stem[0], teacher.stem[1]
    features = stem_conv(images)
    expected_mean = features.mean((0, 2, 3))
    assert torch.allclose(stem_bn.running_mean, expected_mean, atol=1e-4)
    # the source checkpoint's own (training) statistics are not what the teacher uses
    assert not torch.allclose(built["source"]["stem.1.running_mean"], expected_mean, atol=1e-3)
    # a BN deep in the network too: the last stage's first block's projection BN
    last_block = teacher.stages[-1].blocks[0].branches[0].project
    assert not torch.equal(last_block[1].running_mean,
                           built["source"]["stages.4.0.mbconv.project_bn.running_mean"])


def test_width_reorganisation_runs_at_the_start_of_each_expand_part(instrumented_run):
    events = instrumented_run["events"]
    assert events.count(("reorganize", None)) == 2
    for label in ("expand/1", "expand/2"):
        index = events.index(("epoch", label))
        assert events[index - 1] == ("reorganize", None), label
    first_expand = events.index(("epoch", "expand/1"))
    assert ("reorganize", None) not in events[: first_expand - 1]  # not before the expand phase


def test_optimizer_is_nesterov_sgd_without_decay_on_bn_and_bias():
    from pipeline.train.optim import make_optimizer

    config = PipelineConfig()
    space = OFAv2Space(parallel_blocks=True, stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 20))
    net = OFAv2Supernet(space, 4, seed=0)
    optimizer = make_optimizer(net, config)
    assert isinstance(optimizer, torch.optim.SGD)
    no_decay = {id(p) for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    no_decay |= {id(p) for name, p in net.named_parameters() if name.endswith(".bias")}
    decay_by_group: dict[int, float] = {}
    for group in optimizer.param_groups:
        assert group["nesterov"] is True and group["momentum"] == 0.9
        for p in group["params"]:
            decay_by_group[id(p)] = group["weight_decay"]
    assert set(decay_by_group) == {id(p) for p in net.parameters()}  # every parameter, once
    for name, p in net.named_parameters():
        expected = 0.0 if id(p) in no_decay else 3e-5
        assert decay_by_group[id(p)] == expected, name
    assert any(v == 3e-5 for v in decay_by_group.values()) and any(v == 0.0 for v in decay_by_group.values())


def test_training_loss_is_label_smoothed():
    from pipeline.train.distributed import WorkerInfo
    from pipeline.train.steps import StepContext, train_step

    space = OFAv2Space(early_exits=False, stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 20))
    net = OFAv2Supernet(space, 4, dropout=0.0, seed=0)
    train = TrainConfig()
    assert train.label_smoothing == 0.1
    ctx = StepContext(net=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), train=train,
                      info=WorkerInfo(0, 1, torch.device("cpu")))
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 4, (8,), generator=gen)
    arch = space.largest()
    net.set_active(arch)
    net.train()
    with torch.no_grad():
        log_p = F.log_softmax(net(images), dim=1)
    # (1 - eps) CE + eps * mean over classes of -log p, by hand
    eps = 0.1
    expected = float(((1 - eps) * -log_p[torch.arange(8), labels] + eps * -log_p.mean(1)).mean())
    loss = train_step(ctx, [arch], images, labels, lr=0.0, full_phase=False, use_board=False, meta_step=False)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert abs(loss - float(F.cross_entropy(log_p, labels))) > 1e-4


# The phase table of docs/methods.md (OFA's and OFAv2's phases): per part, k subnets per step, learning rate and
# the allowed values of the phase's dimension. Expand's learning rates are open in OFA's paper;
# the project uses OFA's code values (those of depth).
PHASE_TABLE = [
    ("full/1", 1, 0.1, None),
    ("kernel/1", 1, 3e-2, (3, 5, 7)),
    ("level/1", 2, 2.5e-3, (2, 3)),
    ("level/2", 2, 7.5e-3, (1, 2, 3)),
    ("height/1", 2, 1.875e-3, (4, 5)),
    ("height/2", 2, 3.75e-3, (3, 4, 5)),
    ("height/3", 2, 7.5e-3, (2, 3, 4, 5)),
    ("height/4", 2, 1.5e-2, (1, 2, 3, 4, 5)),
    ("depth/1", 2, 2.5e-3, (3, 4)),
    ("depth/2", 2, 7.5e-3, (2, 3, 4)),
    ("expand/1", 4, 2.5e-3, (4, 6)),
    ("expand/2", 4, 7.5e-3, (3, 4, 6)),
]
FIELD = {"kernel": "kernels", "level": "branch_counts", "height": "exits", "depth": "depths", "expand": "expands"}


def test_default_phase_table_gives_every_part_its_k_lr_and_choices():
    space = OFAv2Space(early_exits=True, dense_skips=True, parallel_blocks=True,
                       stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 20))
    plan = build_plan(PipelineConfig().train, space, steps_per_epoch=1)
    assert [p.label for p in plan] == [row[0] for row in PHASE_TABLE]
    for part, (label, k, lr, values) in zip(plan, PHASE_TABLE, strict=True):
        assert part.subnets_per_step == k, label
        assert part.lr == pytest.approx(lr), label
        if values is not None:
            assert getattr(part.choices, FIELD[part.phase]) == values, label
    # what is sampled: level/1 only masks of 2-3 active branches, level/2 all 7 masks
    rng = np.random.default_rng(0)
    level1, level2 = plan[2], plan[3]
    masks1 = {m for _ in range(60) for m in sample_arch(space, level1.choices, rng, 16)["branches"]}
    masks2 = {m for _ in range(60) for m in sample_arch(space, level2.choices, rng, 16)["branches"]}
    assert masks1 == {3, 5, 6, 7} and masks2 == set(range(1, 8))
    depth1 = {d for _ in range(40) for d in sample_arch(space, plan[8].choices, rng, 16)["depths"][:1]}
    assert depth1 == {3, 4}
    expand1 = plan[10]
    arch = sample_arch(space, expand1.choices, rng, 16)
    used = space.used_blocks(arch)
    assert {e for e, u, b in zip(arch["expands"], used, arch["branches"], strict=True) if u and b & 1} <= {4, 6}


@pytest.mark.parametrize("widths", [(24, 40, 80, 112, 160), (8, 8, 16, 16, 24)])
def test_exit_heads_expand_to_6c_then_8c(widths):
    space = OFAv2Space(early_exits=True, stage_widths=widths)
    net = OFAv2Supernet(space, 7, seed=0)
    for exit_number, width in enumerate(widths, start=1):
        head = net.extract(dict(space.largest(), exit=exit_number)).heads[0]
        expand_conv, expand_bn, expand_act = head.expand
        assert (expand_conv.in_channels, expand_conv.out_channels, expand_conv.kernel_size) == (width, 6 * width, (1, 1))
        assert isinstance(expand_bn, nn.BatchNorm2d) and isinstance(expand_act, nn.Hardswish)
        assert (head.mix.in_channels, head.mix.out_channels, head.mix.kernel_size) == (6 * width, 8 * width, (1, 1))
        assert (head.classifier.in_features, head.classifier.out_features) == (8 * width, 7)
    if widths[-1] == 160:  # the last exit is MobileNetV3's original head: 960 then 1280
        assert (net.heads[-1].expand[0].out_channels, net.heads[-1].mix.out_channels) == (960, 1280)
    assert math.isclose(sum(p.numel() for p in net.heads[0].expand[0].parameters()), widths[0] * 6 * widths[0])
