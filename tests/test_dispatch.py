"""Fault-tolerant dispatch: one outcome per item, dead actors replaced, failures and timeouts as rows."""

from __future__ import annotations

import sys
import time

import pytest
import ray.cloudpickle

from pipeline.evaluate.dispatch import Dispatcher, WorkerPool, WorkItem

# Ray workers cannot import this test module, so its actor classes travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class SlowEcho:
    """A test actor body: returns its payload after a delay; raises or hangs on request."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def run(self, payload):
        if payload == "raise":
            raise ValueError("export failed: unsupported op")
        if payload == "hang":
            time.sleep(60)
        time.sleep(self.delay_s)
        return {"echo": payload}


def _pool(ray, name: str, size: int = 2, delay_s: float = 0.0, **kwargs) -> WorkerPool:
    remote = ray.remote(SlowEcho).options(num_cpus=0)
    return WorkerPool(name, lambda: remote.remote(delay_s), size, **kwargs)


def test_every_item_gets_one_outcome_and_failures_become_rows(ray_local):
    ray = ray_local
    dispatcher = Dispatcher([_pool(ray, "a"), _pool(ray, "b", size=1)])
    items = [WorkItem(f"k{i}", "a" if i % 2 else "b", i) for i in range(10)]
    items.append(WorkItem("bad", "a", "raise"))
    streamed = []
    outcomes = dispatcher.run(items, on_outcomes=streamed.extend)
    assert list(outcomes) == [item.key for item in items]
    assert sorted(o.key for o in streamed) == sorted(outcomes)
    assert outcomes["k3"].status == "ok" and outcomes["k3"].value == {"echo": 3}
    assert outcomes["bad"].status == "failed"
    assert "ValueError" in outcomes["bad"].error and "export failed" in outcomes["bad"].error
    assert dispatcher.stats.failed == 1 and dispatcher.stats.resubmitted == 0
    with pytest.raises(ValueError, match="unique"):
        dispatcher.run([WorkItem("x", "a", 1), WorkItem("x", "a", 2)])
    with pytest.raises(ValueError, match="unknown pool"):
        dispatcher.run([WorkItem("x", "zzz", 1)])
    dispatcher.shutdown()


class NamedDelay:
    """A test actor body that says which actor ran an item: it returns its own delay."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def run(self, payload):
        time.sleep(self.delay_s)
        return {"echo": payload, "delay_s": self.delay_s}

    def ready(self) -> bool:
        return True


def test_the_last_items_go_to_idle_actors_not_behind_a_slow_call(ray_local):
    """4 items, a fast actor (0.05 s) and a slow one (1 s). Queueing 2 per actor up front would put
    items 2 and 3 behind the slow call (2 s in all); handing the tail to idle actors gives the slow
    actor one item and the fast one three."""
    ray = ray_local
    remote = ray.remote(NamedDelay).options(num_cpus=0)
    delays = [0.05, 1.0]
    pool = WorkerPool("eval", lambda: remote.remote(delays.pop(0)), 2, max_in_flight=2)
    ray.get([actor.ready.remote() for actor in pool.actors])  # both started before the clock does
    dispatcher = Dispatcher([pool], poll_s=0.05)
    start = time.perf_counter()
    outcomes = dispatcher.run([WorkItem(f"c{i}", "eval", i) for i in range(4)])
    elapsed = time.perf_counter() - start
    ran_on = [o.value["delay_s"] for o in outcomes.values()]
    assert ran_on.count(1.0) == 1 and ran_on.count(0.05) == 3, ran_on
    assert elapsed < 1.9
    dispatcher.shutdown()


def test_killed_actor_work_is_resubmitted_exactly_once(ray_local):
    ray = ray_local
    pool = _pool(ray, "eval", size=2, delay_s=0.15, max_in_flight=2)
    dispatcher = Dispatcher([pool])
    victim = pool.actors[0]
    killed = []

    def kill_once(batch):
        if not killed:
            ray.kill(victim, no_restart=True)
            killed.append(len(batch))

    items = [WorkItem(f"c{i}", "eval", i) for i in range(12)]
    seen = []
    outcomes = dispatcher.run(items, on_outcomes=lambda batch: (seen.extend(o.key for o in batch), kill_once(batch)))
    assert killed
    assert sorted(seen) == sorted(item.key for item in items)  # each streamed exactly once
    assert all(o.status == "ok" for o in outcomes.values())
    assert [o.value["echo"] for o in outcomes.values()] == list(range(12))
    assert dispatcher.stats.actors_replaced >= 1 and dispatcher.stats.resubmitted >= 1
    assert pool.actors[0] is not victim
    dispatcher.shutdown()


def test_timeout_fails_the_item_and_replaces_the_stuck_actor(ray_local):
    ray = ray_local
    pool = _pool(ray, "lat", size=1, timeout_s=1.5, max_in_flight=2)
    dispatcher = Dispatcher([pool], poll_s=0.2)
    start = time.monotonic()
    outcomes = dispatcher.run([WorkItem("stuck", "lat", "hang"), WorkItem("fine", "lat", 7)])
    assert time.monotonic() - start < 20
    assert outcomes["stuck"].status == "failed" and "TimeoutError" in outcomes["stuck"].error
    assert outcomes["fine"].status == "ok" and outcomes["fine"].attempts == 1  # resubmitted without penalty
    assert dispatcher.stats.timeouts == 1
    dispatcher.shutdown()


def test_an_actor_that_keeps_dying_fails_the_item_after_max_retries(ray_local):
    ray = ray_local

    class Crasher:
        def run(self, payload):
            import os

            os._exit(1)

    remote = ray.remote(Crasher).options(num_cpus=0)
    dispatcher = Dispatcher([WorkerPool("crash", remote.remote, 1, max_retries=1, max_in_flight=1)])
    outcomes = dispatcher.run([WorkItem("doomed", "crash", 0)])
    assert outcomes["doomed"].status == "failed" and "died 2 times" in outcomes["doomed"].error
    dispatcher.shutdown()
