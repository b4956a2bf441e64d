"""The archive actor: one named Ray actor per run that owns the run's ``ArchiveStore``.

``start_archive`` creates (or, with ``get_if_exists``, attaches to) the actor named ``name``
(default ``"archive"``) in the job's namespace. The actor is restartable (``max_restarts``): on a
restart Ray reruns its constructor with the same arguments, and ``ArchiveStore`` reloads
``archive.parquet`` and replays its append log, so every batch acknowledged before a crash is back. Every method is
idempotent (upsert is keyed by ``(run_id, arch_id)``), which is why ``max_task_retries`` lets Ray
retry a call that was in flight when the actor died.

``ArchiveActor`` is the plain class; ``start_archive`` wraps it with ``ray.remote`` at call time,
so importing this module does not need Ray to be initialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import ConfigError
from pipeline.evaluate.interface import Objective
from pipeline.search.archive_store import EAGER_ROWS, ArchiveStore
from pipeline.search.files import SearchFiles

DEFAULT_ARCHIVE_NAME = "archive"


def _objectives(objectives: Sequence[Objective | dict[str, str]]) -> list[Objective]:
    return [o if isinstance(o, Objective) else Objective(o["name"], o["direction"]) for o in objectives]


class ArchiveActor:
    """Ray actor body around ``ArchiveStore``; persists every accepted batch before acknowledging it."""

    def __init__(
        self,
        run_dir: str,
        run_id: str,
        space: str,
        objectives: Sequence[Objective | dict[str, str]],
        config: dict[str, Any] | None = None,
        eager_rows: int = EAGER_ROWS,
    ) -> None:
        self.store = ArchiveStore(run_dir, run_id, space, _objectives(objectives), config, eager_rows=eager_rows)

    def ping(self) -> int:
        """Number of rows held (also a cheap liveness check)."""
        return len(self.store)

    def size(self) -> int:
        return len(self.store)

    def upsert(self, rows: list[dict[str, Any]], merge: bool = False) -> int:
        """Insert or replace rows by ``arch_id`` and persist; returns how many ids were new."""
        return self.store.upsert(rows, merge=merge)

    def has(self, arch_id: str) -> bool:
        return self.store.has(arch_id)

    def arch_ids(self) -> list[str]:
        return self.store.arch_ids()

    def get_if_exists(self, arch_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored rows of those ``arch_ids`` that the archive already holds."""
        return self.store.get_many(arch_ids)

    def frame(self) -> pd.DataFrame:
        return self.store.frame()

    def write_front(self, iteration: int) -> str:
        return str(self.store.write_front(iteration))

    def close(self) -> str:
        """Compact the append log into ``archive.parquet`` (complete and readable by pandas after)."""
        return str(self.store.close())

    def archive_path(self) -> str:
        return str(SearchFiles(self.store.run_dir).archive)


def start_archive(
    run_dir: str | Path,
    run_id: str,
    space: str,
    objectives: Sequence[Objective],
    config: dict[str, Any] | None = None,
    *,
    name: str = DEFAULT_ARCHIVE_NAME,
    namespace: str | None = None,
    max_restarts: int = 5,
    max_task_retries: int = 5,
    num_cpus: float = 0.0,
    eager_rows: int = EAGER_ROWS,
):
    """Create the named archive actor, or return the live one of that name; returns its handle.

    ``namespace`` defaults to the job's namespace (the one ``ray.init`` was given); ``eager_rows``
    is ``ArchiveStore``'s (up to that many rows every batch is compacted into ``archive.parquet``).
    """
    import ray

    remote_class = ray.remote(ArchiveActor)
    options: dict[str, Any] = {
        "name": name,
        "get_if_exists": True,
        "max_restarts": max_restarts,
        "max_task_retries": max_task_retries,
        "num_cpus": num_cpus,
    }
    if namespace is not None:
        options["namespace"] = namespace
    handle = remote_class.options(**options).remote(
        str(Path(run_dir).resolve()), run_id, space, [{"name": o.name, "direction": o.direction} for o in objectives],
        config or {}, eager_rows,
    )
    ray.get(handle.ping.remote())
    served = Path(ray.get(handle.archive_path.remote())).parent
    if served != Path(run_dir).resolve():  # a live actor of that name belongs to another run directory
        raise ConfigError(f"the archive actor {name!r} already serves {served}; give this run another "
                          "run.name or ray.namespace, or wait for that run to finish")
    return handle


class ArchiveActorSink:
    """The search engine's archive sink (``upsert``, ``write_front``, ``frame``) over an archive actor handle."""

    def __init__(self, handle: Any):
        self.handle = handle

    def upsert(self, rows: Sequence[dict[str, Any]], merge: bool = True) -> int:
        """Insert or merge ``rows`` (merged by default: rows of measured pieces update known rows)."""
        import ray

        return ray.get(self.handle.upsert.remote(list(rows), merge=merge))

    def write_front(self, iteration: int) -> str:
        import ray

        return ray.get(self.handle.write_front.remote(iteration))

    def frame(self) -> pd.DataFrame:
        import ray

        return ray.get(self.handle.frame.remote())

    def close(self) -> str:
        import ray

        return ray.get(self.handle.close.remote())
