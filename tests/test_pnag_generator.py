"""PNAG fit once / generate many: the saved generator, zero evaluations, the job's two verbs."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from pipeline.config import GenerateConfig
from pipeline.errors import BudgetError, CheckpointError
from pipeline.evaluate.table import TableEvaluator
from pipeline.generate.store import load_generator, save_generator
from pipeline.generate.training import fit_with_evaluator
from pipeline.schema import read_parquet

torch.set_num_threads(1)

FAST = GenerateConfig(
    evals=40, training_steps=60, round_steps=10, evaluator_steps=150, evaluator_round_steps=40,
    samples_per_budget=48, pool_size=200, refit_every=2, batch_size=96,
)
FAST_FLAGS = [
    "--set", "generate.training_steps=40", "--set", "generate.round_steps=5", "--set", "generate.evaluator_steps=100",
    "--set", "generate.evaluator_round_steps=20", "--set", "generate.samples_per_budget=32",
    "--set", "generate.refit_every=3", "--set", "generate.pool_size=200",
]
BUDGETS = np.array([[0.12], [0.3], [0.7]])


class RaisingEvaluator(TableEvaluator):
    """Offers the table's exact costs; any true evaluation is a test failure."""

    def evaluate(self, archs):
        raise AssertionError("generate made a true evaluation")


@pytest.fixture(scope="module")
def fitted(table, tmp_path_factory):
    evaluator = TableEvaluator(table)
    generator = fit_with_evaluator(evaluator.space, evaluator, FAST, seed=3)
    directory = save_generator(generator, tmp_path_factory.mktemp("fit") / "generator")
    return evaluator, generator, directory


def run_job(capsys, *args: str) -> tuple[int, str]:
    """jobs/generate.py's main under ``run_job`` in this process; returns (exit status, stderr)."""
    from pathlib import Path

    from pipeline.runtime import run_job as run

    spec = importlib.util.spec_from_file_location("generate_job", Path(__file__).parents[1] / "jobs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(lambda: module.main(list(args)))
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_fit_spends_at_most_its_evaluations_and_the_manifest_describes_the_generator(fitted):
    evaluator, generator, directory = fitted
    assert evaluator.evaluations <= FAST.evals and generator.fit_info["evaluations"] == evaluator.evaluations
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["space"]["name"] == "natsbench" and manifest["budget_metrics"] == ["params_m"]
    smallest, largest = evaluator.space.smallest(), evaluator.space.largest()
    assert manifest["budget_scale"]["low"] == [evaluator.cheap_metrics(smallest)["params_m"]]
    assert manifest["budget_scale"]["high"] == [evaluator.cheap_metrics(largest)["params_m"]]
    assert manifest["settings"]["evals"] == FAST.evals
    assert {"policy.pt", "ranker.pt", "predictors.joblib"} <= {p.name for p in directory.iterdir()}


def test_a_saved_generator_reloads_and_gives_the_same_answers_with_zero_evaluations(fitted, table):
    _, generator, directory = fitted
    raising = RaisingEvaluator(table)
    before = generator.with_costs(raising.cheap_metrics).generate(BUDGETS, seed=5)
    after = load_generator(directory, exact_cost_fn=raising.cheap_metrics).generate(BUDGETS, seed=5)
    assert after["arch_id"].tolist() == before["arch_id"].tolist()
    assert np.allclose(after["predicted_top1"], before["predicted_top1"])
    assert (after["evaluations"] == 0).all() and (after["mode"] == "generate").all() and after["top1"].isna().all()
    assert raising.evaluations == 0
    # each budget's answer depends on (seed, budget) only, not on the other budgets in the list
    alone = load_generator(directory, exact_cost_fn=raising.cheap_metrics).generate(BUDGETS[1:2], seed=5)
    assert alone["arch_id"].iloc[0] == after["arch_id"].iloc[1]
    for text, params, budget, meets in after[["arch", "params_m", "budget", "meets_budget"]].itertuples(index=False):
        row = table[table["arch"] == text].iloc[0]  # a member of the table, with its exact cost
        assert params == pytest.approx(row["params_m"]) and meets == (params <= budget)


def test_the_policy_moves_to_larger_networks_as_the_budget_grows(fitted):
    _, generator, _ = fitted
    means = []
    for budget in (0.1, 0.4, 1.2):
        archs, genes = generator.canonicalise(generator.sample(np.array([budget]), seed=0))
        means.append(float(generator.costs(genes, archs).mean()))
    assert means[0] < means[1] < means[2]


def test_a_budget_below_the_smallest_architecture_is_a_budget_error(fitted):
    _, generator, directory = fitted
    with pytest.raises(BudgetError, match="below the smallest"):
        generator.generate(np.array([[generator.scale.low[0] / 2]]), seed=0)
    with pytest.raises(CheckpointError, match="manifest.json"):
        load_generator(directory.parent / "nowhere")


def test_job_fit_then_generate_with_the_command_line_contract(tmp_path, capsys, bench_table_path, monkeypatch):
    out = tmp_path / "fit"
    status, stderr = run_job(capsys, "--space", "natsbench", "--table", str(bench_table_path), "--evals", "30",
                             "--seed", "1", "--budget-metric", "params_m", "--out", str(out), *FAST_FLAGS)
    assert status == 0, stderr
    assert (out / "generator" / "manifest.json").is_file() and not (out / "generated.parquet").exists()
    monkeypatch.setattr(TableEvaluator, "evaluate", RaisingEvaluator.evaluate)  # generate must not evaluate
    status, stderr = run_job(capsys, "--space", "natsbench", "--table", str(bench_table_path), "--generator",
                             str(out / "generator"), "--budgets", "0.12,0.3,0.7", "--out", str(tmp_path / "answers"))
    assert status == 0, stderr
    frame = read_parquet(tmp_path / "answers" / "generated.parquet")
    for column in ("budget", "budget_metric", "arch", "arch_id", "predicted_top1", "params_m", "flops_m",
                   "meets_budget", "evaluations", "mode"):
        assert column in frame, column
    assert frame["budget"].tolist() == [0.12, 0.3, 0.7] and (frame["evaluations"] == 0).all()
    assert (frame["mode"] == "generate").all() and frame["meets_budget"].all()
    status, stderr = run_job(capsys, "--space", "natsbench", "--table", str(bench_table_path), "--generator",
                             str(out / "generator"), "--budgets", "0.001", "--out", str(tmp_path / "low"))
    lines = stderr.strip().splitlines()
    assert status != 0 and len(lines) == 1 and "below the smallest" in lines[0]
    assert not (tmp_path / "low" / "generated.parquet").exists()


def test_job_with_two_metrics_in_both_verbs_and_the_search_mode_label(tmp_path, capsys, bench_table_path):
    out = tmp_path / "two"
    status, stderr = run_job(capsys, "--space", "natsbench", "--table", str(bench_table_path), "--evals", "30",
                             "--budget-metric", "params_m,flops_m", "--budgets", "0.5:60,1.0:120", "--out", str(out),
                             *FAST_FLAGS)
    assert status == 0, stderr
    fitted_answers = read_parquet(out / "generated.parquet")
    status, stderr = run_job(capsys, "--space", "natsbench", "--table", str(bench_table_path), "--generator",
                             str(out / "generator"), "--budgets", "0.5:60,1.0:120", "--seed", "0")
    assert status == 0, stderr
    frame = read_parquet(out / "generated.parquet")
    assert frame["arch_id"].tolist() == fitted_answers["arch_id"].tolist()  # same seed (the fit's), same answers
    assert (frame["budget_metric"] == "params_m,flops_m").all()
    assert (frame["params_m"] <= frame["budget@params_m"]).all() and (frame["flops_m"] <= frame["budget@flops_m"]).all()
    status, stderr = run_job(capsys, "--space", "natsbench", "--table", str(bench_table_path), "--evals", "30",
                             "--mode", "search", "--budgets", "0.3", "--out", str(tmp_path / "search"), *FAST_FLAGS)
    assert status == 0, stderr
    search = read_parquet(tmp_path / "search" / "generated.parquet")
    assert (search["mode"] == "search").all() and search["top1"].notna().all() and (search["evaluations"] <= 30).all()


def test_from_run_with_a_budget_vector_over_two_latency_profiles_plus_params(tmp_path, capsys):
    """--from-run fits on the archive and saves RUN_DIR/generator/; --generator answers later (no Ray)
    for (params, latency on two profiles); params are counted exactly on the run's supernet."""
    from pipeline.evaluate.interface import EvaluationResult, Objective
    from pipeline.schema import result_row
    from pipeline.search.archive_store import ArchiveStore
    from pipeline.space.ofav2 import OFAv2Space
    from pipeline.supernet.checkpoint import save_supernet
    from pipeline.supernet.costs import ArchCostCounter
    from pipeline.supernet.network import OFAv2Supernet

    space = OFAv2Space(stage_widths=[8, 8, 16, 16, 24], resolutions=[32])
    net = OFAv2Supernet(space, 10, seed=0)
    save_supernet(tmp_path / "supernet" / "supernet.pt", net)
    counter = ArchCostCounter(net)
    rng = np.random.default_rng(0)
    store = ArchiveStore(tmp_path, "run", "ofav2", [Objective("top1", "max"), Objective("params_m", "min")],
                         config={"supernet": space.options()})
    rows = []
    for arch in [space.smallest(), space.largest()] + [space.sample_initial(rng) for _ in range(14)]:
        costs = counter(arch)
        metrics = {"top1": float(50 + 10 * np.log(costs["params_m"] * 100) + rng.normal(0, 0.5)), **costs,
                   "latency_ms@fast": 0.2 + 0.01 * costs["macs_m"] * rng.uniform(0.95, 1.05),
                   "latency_ms@slow": 1.0 + 0.05 * costs["macs_m"] * rng.uniform(0.95, 1.05)}
        rows.append(result_row(EvaluationResult(arch, space.arch_id(arch), metrics), run_id="run", space="ofav2",
                               arch_text=space.to_text(arch), iteration=0, source="init"))
    store.upsert(rows)
    archive = store.frame()
    metrics = "params_m,latency_ms@fast,latency_ms@slow"
    status, stderr = run_job(capsys, "--from-run", str(tmp_path), "--budget-metric", metrics, "--seed", "0",
                             *FAST_FLAGS, "--set", "generate.evaluator_steps=50", "--set", "generate.training_steps=8")
    assert status == 0, stderr
    assert (tmp_path / "generator" / "manifest.json").is_file()
    vectors = [[float(archive[m].quantile(q)) for m in metrics.split(",")] for q in (0.5, 1.0)]
    text = ",".join(":".join(f"{v:.6f}" for v in vector) for vector in vectors)
    status, stderr = run_job(capsys, "--generator", str(tmp_path / "generator"), "--budgets", text)
    assert status == 0, stderr
    frame = read_parquet(tmp_path / "generated.parquet")
    assert len(frame) == 2 and (frame["evaluations"] == 0).all() and (frame["mode"] == "generate").all()
    for name in metrics.split(","):
        assert f"budget@{name}" in frame and frame[name].notna().all()
    for name in ("latency_ms@fast", "latency_ms@slow"):  # predicted: no latency was measured for the answers
        assert frame[f"predicted_{name}"].notna().all()
    for text, params in frame[["arch", "params_m"]].itertuples(index=False):
        assert params == counter(space.from_text(text))["params_m"]  # exact, counted on the supernet
    expected = np.all([frame[m] <= frame[f"budget@{m}"] + 1e-12 for m in metrics.split(",")], axis=0)
    assert frame["meets_budget"].tolist() == expected.tolist()


def test_clone_targets_are_the_best_measured_architecture_meeting_each_budget(table):
    """The imitation target for a budget is, by hand, the most accurate measured architecture whose
    exact cost meets it (none below the cheapest measured one)."""
    from pipeline.generate.training import PNAGTrainer as PNAG

    evaluator = TableEvaluator(table)
    pnag = PNAG(evaluator.space, FAST, seed=0, exact_cost_fn=evaluator.cheap_metrics,
                exact_names=evaluator.cheap_metric_names)
    by_params = table.sort_values("params_m").drop_duplicates("params_m")
    small, middle_a, middle_b, large = (by_params.iloc[i] for i in (5, len(by_params) // 3, len(by_params) // 3 + 1, -3))
    made_up_top1 = {small["arch"]: 60.0, middle_a["arch"]: 80.0, middle_b["arch"]: 70.0, large["arch"]: 90.0}
    for text, top1 in made_up_top1.items():
        pnag.add_known(evaluator.space.from_text(text), top1, {"params_m": float(table.set_index("arch").loc[text, "params_m"])})
    pnag.scale = pnag.budget_scale()
    raw = np.array([[small["params_m"] * 0.99], [small["params_m"]], [middle_b["params_m"] * 1.001],
                    [large["params_m"] * 0.999], [large["params_m"]]])
    expected = [None, small["arch"], middle_a["arch"], middle_a["arch"], large["arch"]]
    targets, has_target = pnag.clone_targets()(pnag.scale.normalise(raw))
    got = [evaluator.space.to_text(evaluator.space.decode(g)) if ok else None for g, ok in zip(targets, has_target)]
    assert got == expected


def test_behaviour_cloning_makes_the_greedy_sample_the_target():
    """With a flat reward, only the imitation term can teach the policy: after training, its greedy
    answer is the target of the budget's half; without the term it is not."""
    from pipeline.generate.policy import ArchGenerator, ReinforceTrainer

    low_target, high_target = np.array([0, 1, 2, 3, 4, 0]), np.array([4, 4, 3, 1, 0, 2])

    def targets(budget_norm):
        rows = np.where(budget_norm[:, :1] < 0.5, low_target, high_target)
        return rows.astype(np.int64), np.ones(len(budget_norm), dtype=bool)

    def flat_reward(genes, budget_norm):
        return torch.zeros(len(genes))

    answers = {}
    for weight in (1.0, 0.0):
        policy = ArchGenerator([5] * 6, budget_dim=1, hidden=32)
        ReinforceTrainer(policy, 1, seed=0, entropy_weight=0.0).train(flat_reward, 150, 64, targets, weight)
        with torch.no_grad():
            greedy, _, _ = policy(torch.tensor([[0.2], [0.8]]), greedy=True)
        answers[weight] = greedy.numpy()
    assert (answers[1.0][0] == low_target).all() and (answers[1.0][1] == high_target).all()
    assert not ((answers[0.0][0] == low_target).all() and (answers[0.0][1] == high_target).all())
