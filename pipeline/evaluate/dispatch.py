"""Fault-tolerant dispatch of work items over pools of Ray actors: one ``ray.wait`` loop.

``ray.util.ActorPool`` drops the work of an actor that dies, so this module keeps its own books:

- every ``WorkItem`` has a unique ``key`` and names the ``WorkerPool`` that runs it; ``run``
  returns exactly one ``Outcome`` per key, so nothing is lost and nothing is counted twice;
- each actor has at most ``max_in_flight`` calls queued (2 by default, so it never waits for the
  driver between items); a call is queued behind a running one only while more items wait than
  the pool has actors, so the last items of a run go to idle actors, not behind a slow call;
- an actor that dies (``RayActorError``, a crashed worker) is replaced by a fresh one from the
  pool's factory, and every item it held is resubmitted; an item that has been held by
  ``1 + max_retries`` dying actors becomes a failed outcome;
- the item at the head of an actor's queue has ``timeout_s`` from the moment it became the head;
  past that the item fails ("timed out"), the stuck actor is killed and replaced, and the other
  items it held are resubmitted without penalty. Timeouts are not retried: a candidate that hung
  once is likely to hang again;
- an item whose call raises (for example an ONNX export that throws) fails with the error text;
  it is not retried, since evaluation is deterministic.

Outcomes are handed to ``on_outcomes`` as they arrive (a list per loop round), which is how
results stream to the archive actor while the rest is still running.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ActorFactory = Callable[[], Any]


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: ``pool``'s actors run ``method(payload)``."""

    key: Hashable
    pool: str
    payload: Any


@dataclass
class Outcome:
    """What became of one work item."""

    key: Hashable
    pool: str
    status: Literal["ok", "failed"]
    value: Any = None
    error: str = ""
    attempts: int = 1
    seconds: float = 0.0


@dataclass
class DispatchStats:
    """Counters of one or more ``run`` calls."""

    submitted: int = 0
    resubmitted: int = 0
    actors_replaced: int = 0
    timeouts: int = 0
    failed: int = 0
    completed: int = 0


class WorkerPool:
    """A named, fixed-size set of actors made by ``factory``; dead ones are replaced in place."""

    def __init__(
        self,
        name: str,
        factory: ActorFactory,
        size: int,
        *,
        method: str = "run",
        max_in_flight: int = 2,
        timeout_s: float = 600.0,
        max_retries: int = 2,
    ) -> None:
        if size < 1:
            raise ValueError(f"pool {name!r}: size must be at least 1")
        if max_in_flight < 1:
            raise ValueError(f"pool {name!r}: max_in_flight must be at least 1")
        self.name = name
        self.factory = factory
        self.method = method
        self.max_in_flight = max_in_flight
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.actors = [factory() for _ in range(size)]

    def __len__(self) -> int:
        return len(self.actors)

    def submit(self, index: int, payload: Any):
        return getattr(self.actors[index], self.method).remote(payload)

    def replace(self, index: int) -> None:
        """Kill actor ``index`` (if it still lives) and put a fresh one in its place."""
        import ray

        try:
            ray.kill(self.actors[index], no_restart=True)
        except Exception:  # already dead or never started: nothing to kill
            pass
        self.actors[index] = self.factory()

    def shutdown(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self.actors = []


@dataclass
class _Flight:
    """A submitted call: which item, on which actor slot, which attempt."""

    item: WorkItem
    pool: str
    index: int
    attempt: int
    submitted_at: float


@dataclass
class _Slot:
    """The calls queued on one actor, oldest first, and when the oldest became the head."""

    refs: deque = field(default_factory=deque)
    head_since: float = 0.0


def _describe(exc: BaseException) -> str:
    """A one-line error text for a failed row."""
    cause = getattr(exc, "cause", None)
    base = cause if isinstance(cause, BaseException) else exc
    text = str(base).strip().splitlines()
    message = text[-1] if text else ""
    return f"{type(base).__name__}: {message}"[:500]


class Dispatcher:
    """Runs work items over named ``WorkerPool``s until every item has an outcome."""

    def __init__(self, pools: Sequence[WorkerPool], poll_s: float = 1.0) -> None:
        self.pools = {pool.name: pool for pool in pools}
        if len(self.pools) != len(pools):
            raise ValueError("pool names must be unique")
        self.poll_s = poll_s
        self.stats = DispatchStats()

    def shutdown(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()

    def run(
        self,
        items: Iterable[WorkItem],
        on_outcomes: Callable[[list[Outcome]], None] | None = None,
    ) -> dict[str, Outcome]:
        """Run every item; returns ``{key: Outcome}`` in the order the items were given."""
        items = list(items)
        keys = [item.key for item in items]
        if len(set(keys)) != len(keys):
            raise ValueError("work item keys must be unique within one run")
        for item in items:
            if item.pool not in self.pools:
                raise ValueError(f"work item {item.key!r} names unknown pool {item.pool!r}")
        books = _RunBooks(self.pools, self.stats, items)
        while books.busy():
            books.fill()
            books.collect(self.poll_s)
            books.expire()
            fresh = books.take_fresh()
            if fresh and on_outcomes is not None:
                on_outcomes(fresh)
        return {key: books.outcomes[key] for key in keys}


class _RunBooks:
    """The books of one ``Dispatcher.run``: queues, actor slots, calls in flight and outcomes."""

    def __init__(self, pools: dict[str, WorkerPool], stats: DispatchStats, items: Sequence[WorkItem]) -> None:
        self.pools = pools
        self.stats = stats
        self.queues: dict[str, deque[tuple[WorkItem, int]]] = {name: deque() for name in pools}
        for item in items:
            self.queues[item.pool].append((item, 1))
        self.slots = {name: [_Slot() for _ in pool.actors] for name, pool in pools.items()}
        self.flights: dict[Any, _Flight] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.fresh: list[Outcome] = []

    def busy(self) -> bool:
        return any(self.queues.values()) or bool(self.flights)

    def take_fresh(self) -> list[Outcome]:
        fresh, self.fresh = self.fresh, []
        return fresh

    def finish(self, outcome: Outcome) -> None:
        self.outcomes[outcome.key] = outcome
        self.fresh.append(outcome)
        self.stats.completed += 1
        self.stats.failed += outcome.status == "failed"

    def fill(self) -> None:
        """Queue calls on the actors, one level at a time, up to the pool's ``max_in_flight``.

        Every idle actor gets a call first. A call is queued behind a running one only while more
        items wait than the pool has actors: near the end of a run an item queued behind a running
        call could wait while another actor idles, so the last items go to idle actors only."""
        now = time.monotonic()
        for name, pool in self.pools.items():
            queue, slots = self.queues[name], self.slots[name]
            for depth in range(pool.max_in_flight):
                for index, slot in enumerate(slots):
                    if not queue or (depth > 0 and len(queue) <= len(slots)):
                        break
                    if len(slot.refs) > depth:
                        continue
                    item, attempt = queue.popleft()
                    ref = pool.submit(index, item.payload)
                    if not slot.refs:
                        slot.head_since = now
                    slot.refs.append(ref)
                    self.flights[ref] = _Flight(item, name, index, attempt, now)
                    self.stats.submitted += 1

    def collect(self, poll_s: float) -> None:
        """Wait (at most until the nearest head deadline or ``poll_s``) and book what is ready."""
        import ray

        now = time.monotonic()
        deadline = min(
            (slot.head_since + self.pools[name].timeout_s
             for name, pool_slots in self.slots.items() for slot in pool_slots if slot.refs),
            default=now + poll_s,
        )
        pending = list(self.flights)
        ready, _ = ray.wait(pending, num_returns=1, timeout=max(0.0, min(poll_s, deadline - now)))
        if ready:
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0)
        for ref in ready:
            flight = self.flights.get(ref)
            if flight is None:  # its actor was replaced earlier in this round
                continue
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the call itself raised
                outcome = Outcome(flight.item.key, flight.pool, "failed", error=_describe(exc),
                                  attempts=flight.attempt)
            except ray.exceptions.RayError:  # actor died, worker crashed, killed for memory...
                self.lose_actor(flight.pool, flight.index, penalise=True)
                continue
            else:
                outcome = Outcome(flight.item.key, flight.pool, "ok", value=value, attempts=flight.attempt)
            slot = self.slots[flight.pool][flight.index]
            self.flights.pop(ref)
            slot.refs.remove(ref)
            slot.head_since = time.monotonic()
            outcome.seconds = slot.head_since - flight.submitted_at
            self.finish(outcome)

    def expire(self) -> None:
        """Fail every head call past its pool's ``timeout_s`` and replace its stuck actor."""
        now = time.monotonic()
        for name, pool in self.pools.items():
            for index, slot in enumerate(self.slots[name]):
                if slot.refs and now - slot.head_since > pool.timeout_s:
                    head = self.flights.pop(slot.refs.popleft())
                    self.stats.timeouts += 1
                    self.finish(Outcome(head.item.key, name, "failed",
                                        error=f"TimeoutError: no result after {pool.timeout_s:g} s",
                                        attempts=head.attempt, seconds=now - head.submitted_at))
                    self.lose_actor(name, index, penalise=False)

    def lose_actor(self, pool_name: str, index: int, penalise: bool) -> None:
        """Requeue (or fail) everything actor ``index`` held, then replace it."""
        pool = self.pools[pool_name]
        slot = self.slots[pool_name][index]
        held = [self.flights.pop(ref) for ref in slot.refs if ref in self.flights]
        slot.refs.clear()
        for flight in held:
            attempt = flight.attempt + 1 if penalise else flight.attempt
            if attempt > 1 + pool.max_retries:
                self.finish(Outcome(flight.item.key, pool_name, "failed",
                                    error=f"ActorDiedError: the actor died {flight.attempt} times while holding it",
                                    attempts=flight.attempt, seconds=time.monotonic() - flight.submitted_at))
            else:
                self.stats.resubmitted += 1
                self.queues[pool_name].appendleft((flight.item, attempt))
        pool.replace(index)
        self.stats.actors_replaced += 1
