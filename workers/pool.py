"""A pool of warm child processes for the prefork worker.

Children are forked from a multiprocessing *fork server* that imported the conversion
stack once (``preload``), so a new or replacement child is ready in milliseconds instead
of the seconds a fresh interpreter needs to import Prefect, ezdxf, numpy and torch. Each
child then runs its ``warmup`` callables (things that must not happen before a fork, such
as initialising CUDA) and executes flow runs one at a time (:mod:`workers.child`).

Hygiene, as in a Celery prefork pool: a child is replaced after ``max_runs`` runs, when its
resident memory after a run exceeds ``max_memory_bytes``, when it died, and when it was
signalled (its run was cancelled).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from workers.child import child_main

__all__ = ["Child", "ChildPool", "PoolError", "RunOutcome"]

log = logging.getLogger("cad2gltf.worker.pool")


class PoolError(RuntimeError):
    """A child could not be started (import or warm-up failure, timeout)."""


@dataclass
class RunOutcome:
    """How a run in a child ended."""

    exit_code: int
    child_died: bool = False
    rss_bytes: int = 0


@dataclass(eq=False)
class Child:
    """One warm child process."""

    index: int
    process: Any  # multiprocessing.Process
    conn: Connection
    started_at: float = field(default_factory=time.monotonic)
    runs: int = 0
    rss_bytes: int = 0
    signalled: bool = False  # SIGTERM/SIGKILL sent by the worker (a cancelled run)
    dead: bool = False

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def signal(self, signum: int) -> None:
        """Send a signal to the child (marks it for replacement)."""
        self.signalled = True
        os.kill(self.pid, signum)

    def alive(self) -> bool:
        if self.dead:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return self.process.exitcode is None


class ChildPool:
    """N warm children; :meth:`acquire` one, :meth:`run` a job in it, :meth:`release` it.

    Args:
        size: number of children.
        preload: modules the fork server imports once.
        warmup: ``module:function`` callables each child runs after it starts.
        max_runs: runs before a child is replaced.
        max_memory_bytes: resident memory above which a child is replaced after a run.
        start_method: ``forkserver`` (default) or ``spawn``.
        ready_timeout: seconds a child may take to report ready.
    """

    def __init__(self, size: int, *, preload: tuple[str, ...] = (),
                 warmup: tuple[str, ...] = (), max_runs: int = 100,
                 max_memory_bytes: int = 2 << 30, start_method: str = "forkserver",
                 ready_timeout: float = 180.0) -> None:
        self.size = size
        self.preload = tuple(preload)
        self.warmup = tuple(warmup)
        self.max_runs = max_runs
        self.max_memory_bytes = max_memory_bytes
        self.ready_timeout = ready_timeout
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(list(self.preload))
        self._idle: asyncio.Queue[Child] = asyncio.Queue()
        self._children: dict[int, Child] = {}
        self._busy: set[Child] = set()
        self._closing = False
        self._next_index = 0
        self._warned_cold = False
        self.replaced = 0  # children replaced so far (recycling, deaths, cancels)
        self.started = 0

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start all children and wait until every one is ready.

        Raises:
            PoolError: a child failed to import or warm up.
        """
        children = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
        for child in children:
            self._idle.put_nowait(child)

    async def _spawn(self) -> Child:
        return await asyncio.get_running_loop().run_in_executor(None, self._spawn_blocking)

    def _spawn_blocking(self) -> Child:
        index = self._next_index
        self._next_index += 1
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(target=child_main, args=(child_conn, index, self.warmup, self.preload),
                                    name=f"cad2gltf-child-{index}", daemon=False)
        process.start()
        child_conn.close()
        if not parent_conn.poll(self.ready_timeout):
            process.kill()
            raise PoolError(f"child {index} did not report ready within "
                            f"{self.ready_timeout:.0f} s")
        try:
            message = parent_conn.recv()
        except EOFError:
            process.join(5)
            raise PoolError(f"child {index} exited while starting "
                            f"(exit code {process.exitcode})") from None
        if message[0] != "ready":
            process.join(5)
            raise PoolError(f"child {index} failed to start: {message[1]}")
        child = Child(index=index, process=process, conn=parent_conn, rss_bytes=message[2])
        self._children[index] = child
        self.started += 1
        log.info("child %d ready (pid %d, %.0f MB, warm-up %.2f s)", index, child.pid,
                 message[2] / 2**20, message[3])
        if message[4] and not self._warned_cold:
            self._warned_cold = True
            log.warning("the fork server could not preload %s; each child imports them "
                        "itself (slower start)", ", ".join(message[4]))
        return child

    async def close(self, timeout: float = 10.0) -> None:
        """Stop every child: idle ones at once, busy ones killed after ``timeout``."""
        self._closing = True
        for child in list(self._children.values()):
            if child in self._busy:
                continue
            self._stop(child)
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for child in list(self._children.values()):
            if child.alive():
                try:
                    child.process.kill()
                except ProcessLookupError:
                    pass
        await asyncio.get_running_loop().run_in_executor(None, self._join_all)

    def _join_all(self) -> None:
        for child in list(self._children.values()):
            child.process.join(5)
            self._children.pop(child.index, None)

    def _stop(self, child: Child) -> None:
        try:
            child.conn.send(("stop",))
        except (OSError, ValueError):
            pass
        child.conn.close()
        child.dead = True

    # ----------------------------------------------------------------- runs
    @property
    def busy(self) -> int:
        """Children executing a run now."""
        return len(self._busy)

    @property
    def pids(self) -> list[int]:
        """PIDs of the live children."""
        return [c.pid for c in self._children.values() if not c.dead]

    async def acquire(self) -> Child:
        """Wait for an idle child."""
        while True:
            child = await self._idle.get()
            if child.alive():
                self._busy.add(child)
                return child
            await self._replace(child)  # died while idle

    async def run(self, child: Child, job: dict[str, Any]) -> RunOutcome:
        """Hand ``job`` to ``child`` and wait until it is done or the child dies."""
        loop = asyncio.get_running_loop()
        try:
            child.conn.send(("run", job))
        except (OSError, ValueError):
            return await self._died(child)
        ready = loop.create_future()
        fd = child.conn.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            message = child.conn.recv()
        except (EOFError, OSError):
            return await self._died(child)
        child.runs += 1
        child.rss_bytes = int(message[2])
        return RunOutcome(exit_code=int(message[1]), rss_bytes=child.rss_bytes)

    async def _died(self, child: Child) -> RunOutcome:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, child.process.join, 10)
        code = child.process.exitcode
        child.dead = True
        child.runs += 1
        return RunOutcome(exit_code=code if code is not None else -int(signal.SIGKILL),
                          child_died=True)

    async def release(self, child: Child) -> None:
        """Give ``child`` back; replace it when it died, was signalled or is worn out."""
        self._busy.discard(child)
        reason = None
        if child.dead or not child.alive():
            reason = "died"
        elif child.signalled:
            reason = "signalled (cancelled run)"
        elif child.runs >= self.max_runs:
            reason = f"recycled after {child.runs} runs"
        elif child.rss_bytes > self.max_memory_bytes:
            reason = f"recycled at {child.rss_bytes / 2**20:.0f} MB"
        if reason is None:
            self._idle.put_nowait(child)
            return
        log.info("child %d (pid %d) %s", child.index, child.pid, reason)
        await self._replace(child)

    async def _replace(self, child: Child) -> None:
        if not child.dead:
            self._stop(child)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, child.process.join, 10)
        if child.process.exitcode is None:
            child.process.kill()
            await loop.run_in_executor(None, child.process.join, 5)
        self._children.pop(child.index, None)
        if self._closing:
            return
        self.replaced += 1
        try:
            new = await self._spawn()
        except PoolError:
            log.exception("could not replace child %d; the pool shrinks", child.index)
            return
        self._idle.put_nowait(new)
