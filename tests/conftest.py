"""Shared pytest fixtures: Ray stays on 127.0.0.1 with token auth, one module-scoped local Ray."""

from __future__ import annotations

import os

os.environ.pop("RAY_ADDRESS", None)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_TABLE = REPO_ROOT.parent / "shared" / "bench" / "natsbench_tss_cifar10.csv"

# Jobs started as subprocesses (``python jobs/<job>.py``) import this checkout's package, whether
# or not it is installed in the virtualenv (``make setup`` installs it; a worktree may not be).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))
#: what a job started with a bare environment (``env={...}``) needs to find this checkout's package
JOB_PYTHONPATH = {"PYTHONPATH": str(REPO_ROOT)}


def _objectives():
    from pipeline.evaluate.interface import Objective

    return [Objective("top1", "max"), Objective("params_m", "min")]


def _fast_search():
    from pipeline.search.natv2 import NATv2Settings

    return NATv2Settings(
        max_evaluations=30, initial_size=10, candidates_per_iteration=5, surrogates=("ridge", "dtree"), cv_folds=3,
        surrogate_population=20, surrogate_generations=4,
    )


#: constants the test modules share (``from conftest import FAST, OBJECTIVES``), built on first
#: use so that tests which need neither do not pay for importing the search engine:
#: ``OBJECTIVES``: the table tests' two objectives, top-1 up and parameters down;
#: ``FAST``: NATv2 settings small enough for a unit test on the NATS-Bench table (30 evaluations)
_SHARED = {"OBJECTIVES": _objectives, "FAST": _fast_search}


def __getattr__(name: str):
    if name in _SHARED:
        value = globals()[name] = _SHARED[name]()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture(scope="module")
def ray_local():
    """A module-scoped local Ray with 2 CPUs on 127.0.0.1; shut down after the module."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", namespace="tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def bench_table_path() -> Path:
    """The NATS-Bench CIFAR-10 table (``BENCH_TABLE``: CI lays the shared data beside the clone)."""
    if not BENCH_TABLE.is_file():
        pytest.fail(f"benchmark table {BENCH_TABLE} is missing; CI expects ../shared beside the repo")
    return BENCH_TABLE


@pytest.fixture(scope="module")
def table(bench_table_path):
    """The NATS-Bench CIFAR-10 table as ``pipeline.evaluate.table.load_table`` reads it (one per module)."""
    from pipeline.evaluate.table import load_table

    return load_table(bench_table_path)


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch thread (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: modules whose tests start jobs as subprocesses (or a whole cluster): marked ``slow``, so
#: ``pytest -m "not slow"`` is a fast inner loop; ``make test`` still runs everything
SLOW_MODULES = frozenset({
    "test_bad_input", "test_bench_eval", "test_bench_generate", "test_bench_ofav2", "test_bench_search",
    "test_bench_supernet", "test_cluster_defs", "test_e2e_cluster", "test_generate_job", "test_train_cli",
    "test_report",
})

#: the small OFAv2 space the unit tests build supernets in (stage widths 8-24, 16-24 px)
TINY_SPACE_OPTIONS = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20, 24)}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_space_options() -> dict:
    """Options of the tiny OFAv2 space (a fresh dict: tests may extend it)."""
    return dict(TINY_SPACE_OPTIONS)


@pytest.fixture
def tiny_space(tiny_space_options):
    """The tiny OFAv2 space (plain variant)."""
    from pipeline.space.ofav2 import OFAv2Space

    return OFAv2Space(**tiny_space_options)


@pytest.fixture
def tiny_config():
    """The shipped tiny pipeline config (jobs/configs/pipeline_tiny.yaml), validated."""
    from pipeline.config import load_config

    return load_config(REPO_ROOT / "jobs" / "configs" / "pipeline_tiny.yaml")
