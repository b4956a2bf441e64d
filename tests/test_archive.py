"""Archive store and archive actor: idempotent upsert, Pareto ranks, atomic Parquet, restart reload."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import OBJECTIVES

from pipeline import schema as records
from pipeline.atomic import write_parquet_atomic
from pipeline.errors import ConfigError, ResultsError
from pipeline.evaluate.interface import EvaluationResult
from pipeline.schema import read_metadata, read_parquet, result_row
from pipeline.search.archive_store import ArchiveStore, load_archive_frame, log_parts


def _row(arch_id: str, top1: float, params: float, status: str = "ok", iteration: int = 0) -> dict:
    result = EvaluationResult(arch={"x": arch_id}, arch_id=arch_id, status=status,
                              metrics={} if status == "failed" else {"top1": top1, "params_m": params},
                              error="boom" if status == "failed" else "")
    return result_row(result, run_id="r1", space="toy", arch_text=f'{{"x":"{arch_id}"}}',
                      iteration=iteration, source="search")


def test_upsert_is_idempotent_and_ranks_follow_pymoo(tmp_path):
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES, {"seed": 1})
    assert store.upsert([_row("a", 90, 2.0), _row("b", 80, 1.0), _row("c", 70, 3.0)]) == 3
    assert store.upsert([_row("a", 90, 2.0)]) == 0  # a retried batch adds nothing
    frame = store.frame()
    assert len(frame) == 3
    ranks = dict(zip(frame["arch_id"], frame["rank"], strict=True))
    assert ranks == {"a": 0, "b": 0, "c": 1}
    assert set(frame.loc[frame["is_pareto"], "arch_id"]) == {"a", "b"}
    on_disk, meta = load_archive_frame(tmp_path)
    assert len(on_disk) == 3 and meta["objectives"][0] == {"name": "top1", "direction": "max"}
    assert meta["config"] == {"seed": 1}


def test_failed_rows_are_kept_unranked_and_never_replace_ok_rows(tmp_path):
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES)
    store.upsert([_row("a", 90, 2.0), _row("f", 0, 0, status="failed")])
    store.upsert([_row("a", 0, 0, status="failed")])
    frame = store.frame().set_index("arch_id")
    assert frame.loc["a", "status"] == "ok" and frame.loc["a", "top1"] == 90
    assert frame.loc["f", "status"] == "failed" and frame.loc["f", "error"] == "boom"
    assert frame.loc["f", "rank"] == -1 and not frame.loc["f", "is_pareto"]


def test_merge_adds_columns_to_a_known_row(tmp_path):
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES)
    store.upsert([_row("a", 90, 2.0)])
    store.upsert([{"arch_id": "a", "latency_ms@cpu": 1.5}], merge=True)
    row = store.get("a")
    assert row["top1"] == 90 and row["latency_ms@cpu"] == 1.5


def test_reload_keeps_rows_of_other_runs(tmp_path):
    ArchiveStore(tmp_path, "other", "toy", OBJECTIVES).upsert([_row("z", 50, 1.0)])
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES)
    assert len(store) == 0
    store.upsert([_row("a", 90, 2.0)])
    on_disk = read_parquet(tmp_path / "archive.parquet")
    assert sorted(on_disk["run_id"]) == ["other", "r1"]
    assert len(ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES)) == 1


def test_write_front_files_are_readable_by_pandas(tmp_path):
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES)
    store.upsert([_row("a", 90, 2.0), _row("b", 80, 1.0), _row("c", 70, 3.0)])
    path = store.write_front(3)
    front = pd.read_parquet(path)
    assert sorted(front["arch_id"]) == ["a", "b"]
    iteration_file = tmp_path / "fronts" / "iter_003.parquet"
    assert pd.read_parquet(iteration_file)["front_iteration"].tolist() == [3, 3]
    assert read_metadata(iteration_file)["run_id"] == "r1"


def test_crash_during_parquet_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "archive.parquet"
    write_parquet_atomic(pd.DataFrame({"arch_id": ["a"], "top1": [1.0]}), path, {"v": 1})
    real_write = pq.write_table

    def crashing_write(table, where, *args, **kwargs):
        where.write(b"PAR1 partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(records.pq, "write_table", crashing_write)
    with pytest.raises(OSError):
        write_parquet_atomic(pd.DataFrame({"arch_id": ["a", "b"], "top1": [1.0, 2.0]}), path, {"v": 2})
    monkeypatch.setattr(records.pq, "write_table", real_write)
    assert read_parquet(path)["arch_id"].tolist() == ["a"]
    assert read_metadata(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["archive.parquet"]  # no temporary file left


def test_corrupt_file_is_a_results_error(tmp_path):
    path = tmp_path / "archive.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(ResultsError, match="corrupt"):
        read_parquet(path)
    with pytest.raises(ResultsError, match="does not exist"):
        read_parquet(tmp_path / "missing.parquet")


def test_append_log_replays_after_a_crash_and_compacts_on_close(tmp_path):
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES, {"seed": 1}, eager_rows=0)
    store.upsert([_row("a", 90, 2.0), _row("b", 80, 1.0)])
    store.upsert([_row("c", 70, 3.0), _row("b", 0, 0, status="failed")])
    store.upsert([{"arch_id": "a", "latency_ms@cpu": 1.5}], merge=True)
    assert len(log_parts(tmp_path)) == 3 and not (tmp_path / "archive.parquet").exists()
    del store  # a crash: nothing compacted, only the acknowledged parts are on disk
    reloaded = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES, eager_rows=0)
    assert sorted(reloaded.arch_ids()) == ["a", "b", "c"]
    assert reloaded.get("b")["status"] == "ok" and reloaded.get("a")["latency_ms@cpu"] == 1.5
    assert reloaded.get("a")["top1"] == 90
    on_disk, meta = load_archive_frame(tmp_path)  # readers see the log before any compaction
    assert sorted(on_disk["arch_id"]) == ["a", "b", "c"] and meta["config"] == {"seed": 1}
    assert set(on_disk.loc[on_disk["is_pareto"], "arch_id"]) == {"a", "b"}
    reloaded.close()
    assert log_parts(tmp_path) == []
    file = pd.read_parquet(tmp_path / "archive.parquet")
    assert sorted(file["arch_id"]) == ["a", "b", "c"] and file["rank"].tolist() == reloaded.frame()["rank"].tolist()


def test_log_left_over_by_a_crash_during_compaction_replays_to_the_same_rows(tmp_path):
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES, eager_rows=0)
    for i in range(3):
        store.upsert([_row(f"a{i}", 50 + i, 1.0), _row("x", 40 + i, 2.0)])
    parts = [p.read_bytes() for p in log_parts(tmp_path)]
    store.compact()
    for index, data in enumerate(parts[1:], start=2):  # the deletion stopped after the oldest part
        (tmp_path / "archive_log" / f"part-{index:08d}.parquet").write_bytes(data)
    again = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES, eager_rows=0)
    assert len(again) == 4 and again.get("x")["top1"] == 42
    again.upsert([_row("y", 1, 1.0)])  # numbering continues after the leftover parts
    assert [p.name for p in log_parts(tmp_path)][-1] == "part-00000004.parquet"


def test_log_is_compacted_once_it_holds_as_many_rows_as_the_file(tmp_path):
    store = ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES, eager_rows=1000)
    store.upsert([_row(f"a{i}", i, 1.0) for i in range(1000)])  # small: compacted at once
    assert log_parts(tmp_path) == [] and len(read_parquet(tmp_path / "archive.parquet")) == 1000
    store.upsert([_row("b0", 1, 1.0)])
    assert len(log_parts(tmp_path)) == 1 and len(read_parquet(tmp_path / "archive.parquet")) == 1000
    store.upsert([_row(f"b{i}", 1, 1.0) for i in range(1, 999)])
    assert len(log_parts(tmp_path)) == 2
    store.upsert([_row("b999", 1, 1.0)])  # log rows 1000 >= file rows 1000
    assert log_parts(tmp_path) == [] and len(read_parquet(tmp_path / "archive.parquet")) == 2000
    store.upsert([_row("c", 1, 1.0)])
    store.write_front(0)  # every front write leaves a complete archive.parquet
    assert log_parts(tmp_path) == [] and len(pd.read_parquet(tmp_path / "archive.parquet")) == 2001


@pytest.mark.parametrize("eager_rows", [1000, 0], ids=["rewrite", "append_log"])
def test_archive_actor_restart_keeps_acknowledged_rows(ray_local, tmp_path, eager_rows):
    from pipeline.search.archive import start_archive

    ray = ray_local
    archive = start_archive(tmp_path, "r1", "toy", OBJECTIVES, {"seed": 0}, name="archive-restart-test",
                            eager_rows=eager_rows)
    acknowledged = []
    for start in range(0, 12, 4):
        batch = [_row(f"a{i}", 50 + i, 1.0 + i) for i in range(start, start + 4)]
        ray.get(archive.upsert.remote(batch))
        acknowledged += [row["arch_id"] for row in batch]
    assert len(log_parts(tmp_path)) == (3 if eager_rows == 0 else 0)
    ray.kill(archive, no_restart=False)
    # The handle stays valid: Ray restarts the actor, whose constructor reloads archive.parquet.
    assert sorted(ray.get(archive.arch_ids.remote())) == sorted(acknowledged)
    again = start_archive(tmp_path, "r1", "toy", OBJECTIVES, name="archive-restart-test")  # get_if_exists
    assert ray.get(again.size.remote()) == 12
    found = ray.get(archive.get_if_exists.remote(["a3", "nope"]))
    assert list(found) == ["a3"] and found["a3"]["top1"] == 53
    ray.get(archive.upsert.remote([_row("a3", 53, 4.0)]))  # idempotent after restart too
    assert ray.get(archive.size.remote()) == 12
    with pytest.raises(ConfigError, match="already serves"):  # same name, another run directory
        start_archive(tmp_path / "elsewhere", "r2", "toy", OBJECTIVES, name="archive-restart-test")
    ray.get(archive.upsert.remote([_row("z", 10, 9.0)]))
    ray.kill(archive, no_restart=True)  # killed for good: the acknowledged rows are still on disk
    assert sorted(load_archive_frame(tmp_path)[0]["arch_id"]) == sorted(acknowledged + ["z"])
    ArchiveStore(tmp_path, "r1", "toy", OBJECTIVES).close()
    assert len(pd.read_parquet(tmp_path / "archive.parquet")) == 13 and log_parts(tmp_path) == []
