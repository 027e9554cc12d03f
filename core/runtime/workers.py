"""Scoring workers: a pass over many contacts shared out among forked processes, each with its own connection to
the store.

Each worker is handed id ranges over its own pipe and answers with what it did of each (for a scoring pass, the
counts of the chunks it scored and saved); the parent waits on the pipes and the workers' exits at once, so a
worker that dies ends the pass with `ScoringFailed` instead of a wait that never ends, and the answers come back
in the order the ranges were asked for.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import traceback
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from leadpulse.core.errors import ScoringFailed
from leadpulse.core.store.store import Store

log = logging.getLogger("leadpulse.pipeline")

V = TypeVar("V")
V_co = TypeVar("V_co", covariant=True)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, which taskset and container runtimes narrow."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ChunkReader(Protocol[V_co]):
    """What a worker runs: read (score, decide, save) the contacts with ids in ``(after, through]``, a chunk at a
    time."""

    def read(self, store: Store, after: str = "", through: str | None = None) -> Iterator[V_co]: ...


def in_workers(job: ChunkReader[V], path: Path, bounds: Sequence[tuple[str, str]], workers: int, *,
               stop: threading.Event | None = None) -> Iterator[V]:
    """What `job` reads of each id range in `bounds`, read by `workers` forked processes from the store at `path`,
    in the order of `bounds`. Once `stop` is set no range is handed out any more: the ranges in hand are finished
    and their answers yielded.

    :raises ScoringFailed: if a worker dies or fails; what came before is yielded first.
    """
    # Each worker gets chunks over its own pipe and answers over it; this process waits on the pipes and the
    # workers' exits at once, so a worker that dies (killed, out of memory) ends the pass with an error
    # instead of a wait for an answer that never comes. No helper thread competes here with saving.
    # A few chunks in flight per worker keep them busy while saving catches up, and memory flat when it lags.
    context = multiprocessing.get_context("fork")
    started: list[_Worker] = []
    done = False
    try:
        for _ in range(workers):
            ours, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(job, path, theirs), daemon=True)
            process.start()
            theirs.close()
            started.append(_Worker(process, ours))
        yield from _shared_out(started, bounds, in_flight=2, stop=stop)
        done = True
    finally:
        for worker in started:
            if done:  # idle, waiting for the next chunk: told to stop
                with contextlib.suppress(OSError):
                    worker.pipe.send(None)
            else:  # failed, or its caller stopped reading: what a worker is in the middle of is not wanted (a
                # transaction it had begun is rolled back)
                worker.process.kill()
            worker.process.join()
            worker.pipe.close()


def _shared_out(workers: Sequence[_Worker], bounds: Sequence[tuple[str, str]],
                in_flight: int, stop: threading.Event | None) -> Iterator[V]:
    """Hand `bounds` out to `workers`, up to `in_flight` each, until `stop` is set, and yield the answers in the
    order of `bounds`."""
    by_pipe = {worker.pipe: worker for worker in workers}
    exits = {worker.process.sentinel: worker for worker in workers}
    answered: dict[int, list[V] | _WorkerError] = {}
    sent = first = 0

    def feed(worker: _Worker) -> None:
        nonlocal sent
        # bounded by the answers not yet yielded, so a slow worker cannot make the others' answers pile up here
        most = first + in_flight * len(workers) + 1
        while len(worker.chunks) < in_flight and sent < min(len(bounds), most) and not (stop and stop.is_set()):
            worker.chunks.append(sent)
            try:
                worker.pipe.send((sent, *bounds[sent]))
            except OSError:
                raise ScoringFailed(worker.died(bounds)) from None
            sent += 1

    for worker in workers:
        feed(worker)
    while first < sent:  # once stopped, nothing more is sent
        while first not in answered:
            for ready in multiprocessing.connection.wait([*by_pipe, *exits]):
                if ready in exits:  # a worker stops only when told to, after the last chunk
                    raise ScoringFailed(exits[ready].died(bounds))
                worker = by_pipe[ready]
                try:
                    number, outcome = worker.pipe.recv()
                except (EOFError, OSError):
                    raise ScoringFailed(worker.died(bounds)) from None
                worker.chunks.popleft()
                answered[number] = outcome
        outcome = answered.pop(first)
        if isinstance(outcome, _WorkerError):  # in order, so the answers before it are yielded first
            log.error("a scoring worker failed:\n%s", outcome.trace)
            raise ScoringFailed(f"a scoring worker failed on contacts after id {bounds[first][0]!r}: {outcome.error}")
        first += 1
        for worker in workers:  # before the answer is handed on: what the caller then does keeps no worker idle
            feed(worker)
        yield from outcome


@dataclass
class _Worker:
    """A scoring worker process, its pipe, and the chunks (positions in the pass's bounds) it was given and has
    not answered yet, oldest first."""

    process: Any
    pipe: Any
    chunks: deque[int] = field(default_factory=deque)

    def died(self, bounds: Sequence[tuple[str, str]]) -> str:
        """What to say of this worker, gone without a word."""
        self.process.join(timeout=1)
        code = self.process.exitcode
        if code is None:
            how = "stopped answering"
        else:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        doing = f"while scoring contacts after id {bounds[self.chunks[0]][0]!r}" if self.chunks else "while idle"
        return (
            f"a scoring worker (pid {self.process.pid}) {how} {doing}, perhaps out of memory; the scores saved before "
            "stay saved and the rest stay due: run again"
        )


@dataclass(frozen=True)
class _WorkerError:
    """An exception in a scoring worker, as text: any exception's text crosses between processes, not every
    exception does."""

    error: str
    trace: str

    @classmethod
    def of(cls, exc: BaseException) -> _WorkerError:
        return cls(f"{type(exc).__name__}: {exc}", "".join(traceback.format_exception(exc)))


def _serve(job: ChunkReader[Any], path: Path, pipe: Any) -> None:
    """A scoring worker: score each chunk asked for over `pipe` and send back its verdicts, until told to stop."""
    # A chunk makes and drops some 100,000 objects with no cycles among them; at the default threshold the cycle
    # collector walks them over and over (8% of a worker's time). What the fork inherited is never collected.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which then stops the workers
    store: Store | None = None
    failure: _WorkerError | None = None
    try:
        store = Store.open(path)
    except Exception as exc:  # the answer to every chunk asked for
        failure = _WorkerError.of(exc)
    try:
        while (task := _next_task(pipe)) is not None:
            number, after, through = task
            outcome: Any = failure
            if store is not None:
                try:
                    outcome = list(job.read(store, after, through))
                except Exception as exc:  # raised where the pass was asked for
                    outcome = _WorkerError.of(exc)
            try:
                pipe.send((number, outcome))
            except OSError:  # the parent is gone
                return
            except Exception as exc:  # a verdict that cannot cross to the parent
                pipe.send((number, _WorkerError.of(exc)))
    finally:
        if store is not None:
            store.close()


def _next_task(pipe: Any) -> tuple[int, str, str] | None:
    """The next chunk asked for, or None when told to stop or the parent is gone."""
    try:
        task: tuple[int, str, str] | None = pipe.recv()
        return task
    except EOFError:
        return None

