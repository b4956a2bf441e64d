"""Cream of the Crop as the paper states it (docs/methods.md), including its "known faults" done right.

- the board's and the meta-gradient's held-out images are a seeded slice of the training split,
  recorded in the run; no validation image enters training;
- a teacher is always a different path from the student's;
- the full phase of an early-exit supernet keeps its multi-exit loss after Cream's warm-up;
- the meta-gradient reaches every student parameter (checked against autograd through the
  simulated step), and board-weighted sampling really changes what is sampled;
- the board's best path is Cream's answer: a row with ``source=cream`` in the run's archive.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from pipeline.config import TrainConfig, load_config
from pipeline.data import eval_transform, load_splits_from_config
from pipeline.space.ofav2 import ElasticChoices, OFAv2Space, sample_arch
from pipeline.supernet import OFAv2Supernet
from pipeline.train.cream import (
    BoardEntry,
    MetaNetwork,
    PrioritizedBoard,
    board_prior,
    meta_gradient,
    teacher_candidates,
)
from pipeline.train.distributed import WorkerInfo
from pipeline.train.losses import kd_loss, multi_exit_loss
from pipeline.train.steps import CreamState, StepContext, train_step

TINY_SPACE = dict(stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 20))
TINY = [
    "data.dataset=synthetic", "data.synthetic_images=96", "data.synthetic_classes=4", "data.batch_size=16",
    "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]",
    "train.epochs_scale=0.005", "train.steps_per_epoch=2", "train.eval_subnets=0",
    "train.calibration_images=16", "train.eval_images=16", "train.num_workers=0", "train.threads_per_worker=1",
    "train.distillation=cream", "train.cream.warmup_epochs=0", "train.cream.board_size=3",
    "train.cream.meta_update_interval=1", "train.cream.held_out_images=12",
    "train.phases=[{name: full, parts: [{epochs: 200, lr: 0.05}]},"
    "{name: kernel, parts: [{epochs: 400, lr: 0.01, subnets_per_step: 2}]}]",
]


def _rows(images: torch.Tensor) -> list[str]:
    return [hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in images]


@pytest.fixture(scope="module")
def cream_run(tmp_path_factory):
    """A real tiny Cream run; the loop's batch stream and Cream state are wrapped to record."""
    import pipeline.train.loop as loop
    from pipeline.train import train_supernet

    record = {"trained_on": [], "trainer": None}
    original_batches = loop.endless_batches
    original_state = loop.SupernetTrainer._cream_state

    def endless_batches(splits, *args, **kwargs):
        record["trained_on"].append(splits.train_images)
        return original_batches(splits, *args, **kwargs)

    def cream_state(self):
        record["trainer"] = self
        return original_state(self)

    config = load_config(overrides=TINY)
    run_dir = tmp_path_factory.mktemp("cream")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "endless_batches", endless_batches)
        patch.setattr(loop.SupernetTrainer, "_cream_state", cream_state)
        train_supernet(config, run_dir)
    return config, run_dir, record


def test_cream_images_are_a_recorded_slice_of_training_never_validation(cream_run):
    from pipeline.supernet.checkpoint import load_supernet

    config, run_dir, record = cream_run
    original = load_splits_from_config(config.data, config.run.seed)
    trainer = record["trainer"]
    train_rows, val_rows = _rows(original.train_images), _rows(original.val_images)
    assert len(set(train_rows)) == len(train_rows)  # synthetic images are distinct
    _, extra = load_supernet(run_dir / "supernet" / "supernet.pt")
    recorded = extra["cream"]
    indices = recorded["held_out_train_indices"]
    assert len(indices) == 12 and recorded["held_out_seed"] == trainer.held_out.seed
    held_rows = _rows(trainer.held_out.images)
    assert held_rows == [train_rows[i] for i in indices]  # the recorded positions of the training split
    # the board's and the meta-gradient's images are exactly those, normalised
    resolution = max(trainer.space.resolutions)
    expected = eval_transform(original.train_images[indices], original.mean, original.std, resolution)
    assert torch.equal(trainer.cream.held_out_images, expected)
    assert torch.equal(trainer.cream.held_out_labels, original.train_labels[indices])
    assert record["trained_on"]
    for images in record["trained_on"]:  # what the optimiser saw
        seen = set(_rows(images))
        assert not seen & set(val_rows) and not seen & set(held_rows)
        assert len(seen) == len(train_rows) - 12
    assert not set(held_rows) & set(val_rows)


def test_cream_run_publishes_its_board_best_first(cream_run):
    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.train.cream import cream_answer

    _, run_dir, record = cream_run
    board = record["trainer"].cream.board
    _, extra = load_supernet(run_dir / "supernet" / "supernet.pt")
    assert len(extra["cream"]["board"]) == len(board) == 3
    assert cream_answer(extra) == [board.best().arch]


def _entry(arch: dict, accuracy: float, classes: int = 4, n: int = 4, seed: int = 0) -> BoardEntry:
    probs = torch.softmax(torch.randn(n, classes, generator=torch.Generator().manual_seed(seed)), dim=1)
    return BoardEntry(arch=arch, accuracy=accuracy, macs=1.0, probs=probs)


def _cream_context(space: OFAv2Space, board: PrioritizedBoard) -> tuple[StepContext, torch.Tensor, torch.Tensor]:
    net = OFAv2Supernet(space, 4, dropout=0.0, seed=0)
    gen = torch.Generator().manual_seed(1)
    images, labels = torch.randn(8, 3, 20, 20, generator=gen), torch.randint(0, 4, (8,), generator=gen)
    meta = MetaNetwork(4, 8)
    cream = CreamState(board=board, meta=meta, meta_optimizer=torch.optim.Adam(meta.parameters()),
                       held_out_images=images[:4], held_out_labels=labels[:4], stored_images=images[:4],
                       macs=lambda arch: 1.0)
    ctx = StepContext(net=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.0), train=TrainConfig(),
                      info=WorkerInfo(0, 1, torch.device("cpu")), cream=cream)
    return ctx, images, labels


def test_a_teacher_is_never_the_students_own_path():
    space = OFAv2Space(early_exits=False, **TINY_SPACE)
    student = space.largest()  # at resolution 20
    same_elsewhere = dict(student, resolution=16)  # the student's path at another resolution
    other = dict(student, kernels=[3] * 20)
    board = PrioritizedBoard(3)
    board.entries = [_entry(same_elsewhere, 90.0), _entry(student, 80.0, seed=1)]
    assert teacher_candidates(board, student) == []
    # in a step, a board holding only the student's path teaches nothing: plain label-smoothed CE
    ctx, images, labels = _cream_context(space, board)
    loss = train_step(ctx, [student], images, labels, lr=0.0, full_phase=False, use_board=True, meta_step=False)
    ctx.net.set_active(student)
    with torch.no_grad():
        expected = float(kd_loss(ctx.net(images), labels, None, label_smoothing=0.1))
    assert loss == pytest.approx(expected, rel=1e-5)
    board.entries.append(_entry(other, 50.0, seed=2))
    assert [e.arch for e in teacher_candidates(board, student)] == [other]
    loss = train_step(ctx, [student], images, labels, lr=0.0, full_phase=False, use_board=True, meta_step=False)
    assert abs(loss - expected) > 1e-6  # now distilled from the other path


def test_full_phase_of_an_early_exit_supernet_keeps_the_multi_exit_loss_under_cream():
    space = OFAv2Space(early_exits=True, **TINY_SPACE)
    student = space.largest()
    board = PrioritizedBoard(3)
    board.entries = [_entry(dict(student, kernels=[3] * 20), 90.0), _entry(dict(student, exit=3), 85.0, seed=1)]
    ctx, images, labels = _cream_context(space, board)
    loss = train_step(ctx, [student], images, labels, lr=0.0, full_phase=True, use_board=True, meta_step=True)
    ctx.net.set_active(student)
    ctx.net.train()
    with torch.no_grad():
        expected = float(multi_exit_loss(ctx.net.forward_exits(images), labels, ctx.train.exit_weights, 0.1))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_meta_gradient_reaches_every_student_parameter():
    """d L_val(theta') / d rho, theta' = theta - lr (rho grad KD + (2 - rho) grad CE) / 2 over the
    whole student, by autograd through the simulated step (no shortcut), and per parameter."""
    space = OFAv2Space(early_exits=False, **TINY_SPACE)
    net = OFAv2Supernet(space, 4, dropout=0.0, seed=0).eval()
    net.set_active(space.largest())
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(6, 3, 20, 20, generator=gen), torch.randint(0, 4, (6,), generator=gen)
    held_images, held_labels = torch.randn(5, 3, 20, 20, generator=gen), torch.randint(0, 4, (5,), generator=gen)
    target = torch.softmax(torch.randn(6, 4, generator=gen), dim=1)
    lr = 0.5
    rho = torch.tensor(0.7, requires_grad=True)
    meta_gradient(net, rho, images, labels, target, held_images, held_labels, lr)
    got = float(rho.grad)

    params = dict(net.named_parameters())
    logits = net(images)
    ce = F.cross_entropy(logits, labels)
    kd = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    g_kd = dict(zip(params, torch.autograd.grad(kd, list(params.values()), retain_graph=True, allow_unused=True)))
    g_ce = dict(zip(params, torch.autograd.grad(ce, list(params.values()), allow_unused=True)))

    def val_loss(r: torch.Tensor, only: set[str] | None = None) -> torch.Tensor:
        stepped = {}
        for name, p in params.items():
            a = g_kd[name] if g_kd[name] is not None else torch.zeros_like(p)
            b = g_ce[name] if g_ce[name] is not None else torch.zeros_like(p)
            moved = only is None or name in only
            stepped[name] = p.detach() - lr * (r * a + (2 - r) * b) / 2 if moved else p.detach()
        return F.cross_entropy(functional_call(net, {**stepped, **dict(net.named_buffers())}, (held_images,)),
                               held_labels)

    r = torch.tensor(0.7, requires_grad=True)
    (reference,) = torch.autograd.grad(val_loss(r), [r])
    assert got == pytest.approx(float(reference), rel=1e-3, abs=1e-7)
    r1 = torch.tensor(0.7, requires_grad=True)
    (first_only,) = torch.autograd.grad(val_loss(r1, {next(iter(params))}), [r1])
    assert abs(float(first_only) - got) > 1e-3 * max(abs(got), 1e-6)  # the known fault would differ
    # every parameter that the student loss reaches also moves the meta-gradient
    used = [n for n in params if g_kd[n] is not None or g_ce[n] is not None]
    assert len(used) > 10


def test_board_weighted_sampling_changes_the_sampled_distribution():
    space = OFAv2Space(early_exits=False, **TINY_SPACE)
    choices = ElasticChoices(kernels=(3, 5, 7))
    board = PrioritizedBoard(3)
    board.entries = [_entry(dict(space.largest(), kernels=[3] * 20), 90.0 - i, seed=i) for i in range(3)]
    uniform = [k for s in range(200) for k in sample_arch(space, choices, np.random.default_rng(s), 20)["kernels"]]
    prior = board_prior(board, mix=0.5)
    weighted = [k for s in range(200)
                for k in sample_arch(space, choices, np.random.default_rng(s), 20, prior)["kernels"]]
    share_uniform, share_weighted = np.mean(np.equal(uniform, 3)), np.mean(np.equal(weighted, 3))
    assert share_uniform == pytest.approx(1 / 3, abs=0.03)
    assert share_weighted == pytest.approx(0.5 / 3 + 0.5, abs=0.03)  # (1 - mix) uniform + mix board
    assert board_prior(PrioritizedBoard(3), mix=0.5).mix == 0.0  # an empty board leaves sampling uniform


def test_cream_trained_run_has_its_answer_as_a_cream_row_in_the_archive(ray_local, tmp_path):
    from pipeline.schema import read_parquet
    from pipeline.stages import run_search_stage
    from pipeline.supernet.checkpoint import save_supernet
    from pipeline.train.cream import board_record

    space = OFAv2Space(**TINY_SPACE)
    answer = dict(space.smallest(), resolution=20, exit=2)
    board = PrioritizedBoard(3)
    board.entries = [_entry(space.largest(), 40.0), _entry(answer, 70.0, seed=1)]
    torch.set_num_threads(1)
    save_supernet(tmp_path / "supernet" / "supernet.pt", OFAv2Supernet(space, 4, seed=0),
                  extra={"cream": board_record(board, 7, [1, 2])})
    config = load_config(None, [
        "run.name=creamsearch", "data.dataset=synthetic", "data.synthetic_images=64", "data.synthetic_classes=4",
        "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]", "train.distillation=cream",
        "evaluate.num_evaluators=1", "evaluate.calibration_images=16", "evaluate.calibration_batch_size=8",
        "evaluate.eval_batch_size=32", "evaluate.profiles=[{name: one, threads: 1, warmup: 1, repeats: 3, num_cpus: 0.5}]",
        "search.objectives=['top1:max', 'params_m:min']", "search.max_evaluations=6", "search.initial_size=6",
        "search.surrogates=[ridge]", "search.cv_folds=2", "search.surrogate_population=8",
        "search.surrogate_generations=1",
    ])
    run_search_stage(config, tmp_path)
    archive = read_parquet(tmp_path / "archive.parquet")
    cream = archive[archive["source"] == "cream"]
    assert len(cream) == 1 and cream["arch_id"].iloc[0] == space.arch_id(answer)
    assert cream["status"].iloc[0] == "ok" and 0 <= cream["top1"].iloc[0] <= 100
    assert cream["params_m"].iloc[0] > 0
