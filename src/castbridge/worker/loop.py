"""The worker loop: per-lane capacity, leased claims, lease renewal, draining on SIGTERM.

Each lane (sends, status polls and pushed reports, HighLevel reports, inbound, admin) has its
own number of slots, so a backlog of sends never delays a status report or a reply. Nothing
lives only in memory: a job is claimed with a lease in the database, and a worker killed
mid-job leaves it to be reclaimed when the lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import os
import socket
import time
import uuid
from datetime import UTC, datetime

import structlog

from castbridge import metrics
from castbridge.config import Settings
from castbridge.logging import get_logger
from castbridge.outbound.runtime import MessageContext
from castbridge.store import jobs as job_store
from castbridge.store.db import Store
from castbridge.store.group import GroupCommit
from castbridge.store.jobs import ClaimedJob, Transition
from castbridge.worker.dispatch import Dispatcher
from castbridge.worker.wake import JobListener, Wake

log = get_logger(__name__)

# While LISTEN/NOTIFY is up, polling is only a safety net (a notification lost with its
# connection is recovered at the reconnect): an idle worker reads the queue this rarely.
LISTENING_POLL_SECONDS = 5.0
# How far the database's clock (which decides what a claim takes) may trail this process's.
CLOCK_SLACK = 0.05
# Due times remembered per lane at most: beyond them (a burst of 100,000 spaced sends) the
# once-per-poll-interval queue read finds what falls due next.
SCHEDULED_CAP = 10_000


def new_worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lane_capacity(settings: Settings) -> dict[str, int]:
    """Slots per lane from CASTBRIDGE_WORKER_CONCURRENCY (half to sends, a quarter each to
    status and reports, a few for inbound and admin), or CASTBRIDGE_LANE_CONCURRENCY."""
    total = settings.worker_concurrency
    capacity = {
        "send": max(1, total // 2),
        "status": max(1, total // 4),
        "report": max(1, total // 4),
        "inbound": max(1, total // 8),
        "admin": 2,
    }
    for part in (settings.lane_concurrency or "").split(","):
        if "=" in part:
            lane, _, value = part.partition("=")
            if lane.strip() in capacity and value.strip().isdigit():
                capacity[lane.strip()] = max(1, int(value.strip()))
    return capacity


class Worker:
    """Runs jobs from every lane; several workers (processes) may share one database."""

    def __init__(self, settings: Settings, store: Store, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.worker_id = dispatcher.runtime.worker_id
        # Outcomes finishing together share one transaction on SQLite, where every commit is an
        # fsync behind the one write lock (as intake's do). Not on PostgreSQL: there each
        # outcome commits alone, so no batch holds row locks that another process's batch
        # could need in the other order.
        self._outcomes = GroupCommit(store) if store.sqlite else None
        self.capacity = lane_capacity(settings)
        self.wake_signal = Wake()
        dsn = store.listen_dsn()
        self.listener = JobListener(dsn, self.wake) if dsn is not None else None
        self._stopping = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], ClaimedJob] = {}
        self._running: dict[str, int] = dict.fromkeys(self.capacity, 0)
        self._due: dict[str, float] = dict.fromkeys(self.capacity, 0.0)  # monotonic
        # Lanes the last cheap read found with nothing queued: the next look is that read
        # again, not a claim (a write transaction per lane) that would find nothing.
        self._empty: set[str] = set()
        # Lanes whose last claim filled every free slot: only these may have more waiting when
        # a slot frees; a lane the claim drained learns of new work from wake() and the reads.
        self._saturated: set[str] = set()
        # Bumped by every wake of a lane, so a queue read that began before the wake cannot
        # overwrite what the wake said.
        self._wakes: dict[str, int] = dict.fromkeys(self.capacity, 0)
        self._last_read = float("-inf")  # monotonic time of the last next-due read
        # When the jobs this process scheduled for later fall due (monotonic, and the job's id
        # where known; a heap per lane), so a claim that drains a lane knows when to look again.
        self._scheduled: dict[str, list[tuple[float, int]]] = {lane: [] for lane in self.capacity}

    def wake(self, lane: str | None = None, when: datetime | None = None) -> None:
        """New work was committed by this process for `lane` (every lane: None), due at `when`
        (now: None): look then, not at the next tick."""
        for name in [lane] if lane else list(self._due):
            self.wake_at(name, when)

    def wake_at(self, lane: str, when: datetime | None, job_id: int = 0) -> None:
        """Work this process committed falls due at `when` (None: now): look then, without a
        claim before it that would find nothing."""
        if lane not in self._due:
            return
        now = time.monotonic()
        wait = 0.0 if when is None else (when - datetime.now(UTC)).total_seconds()
        if wait > 0 and len(self._scheduled[lane]) < SCHEDULED_CAP:
            heapq.heappush(self._scheduled[lane], (now + wait, job_id))
        self._due[lane] = min(self._due[lane], now + max(0.0, wait))
        self._empty.discard(lane)
        self._wakes[lane] += 1
        self.wake_signal.set()

    def stop(self) -> None:
        self._stopping.set()
        self.wake_signal.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        log.info("worker_started", worker_id=self.worker_id, lanes=self.capacity)
        heartbeat = asyncio.create_task(self._heartbeat(), name="castbridge-heartbeat")
        listening = (
            asyncio.create_task(self.listener.run(), name="castbridge-listen")
            if self.listener is not None
            else None
        )
        try:
            while not self._stopping.is_set():
                claimed = await self._claim_due()
                if not claimed:
                    await self._idle()
        finally:
            try:
                await self._drain()
            finally:
                background = [task for task in (heartbeat, listening) if task is not None]
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
            log.info("worker_stopped", worker_id=self.worker_id)

    async def _claim_due(self) -> int:
        claimed = 0
        now = time.monotonic()
        for lane, slots in self.capacity.items():
            free = slots - self._running[lane]
            if free <= 0 or lane in self._empty or self._due[lane] > now:
                continue
            if self._stopping.is_set():
                break
            try:
                async with self.store.write() as session:
                    jobs = await job_store.claim(
                        session,
                        lane=lane,
                        worker_id=self.worker_id,
                        limit=free,
                        lease_seconds=self.settings.worker_lease_seconds,
                    )
                    # What the jobs work on is read in the claim's own transaction: one
                    # transaction per batch, and a failed read leaves the jobs unclaimed
                    # instead of running them without their message.
                    contexts = await self.dispatcher.contexts(session, jobs)
            except Exception:
                log.exception("claim_failed", lane=lane)
                self._due[lane] = now + self.settings.worker_poll_interval
                continue
            if len(jobs) < free:
                # The lane is drained for now: look again when something falls due.
                self._saturated.discard(lane)
                self._due[lane] = self._next_scheduled(lane, now, {job.id for job in jobs})
            else:
                self._saturated.add(lane)
            if jobs:
                claimed += len(jobs)
                self._start(jobs, contexts)
        return claimed

    def _next_scheduled(self, lane: str, now: float, claimed: set[int]) -> float:
        """After a claim drained `lane`: when the next job this process scheduled falls due, or
        the poll interval. A job this claim took is done with; one due more than CLOCK_SLACK
        ago was taken by some claim; one due inside the slack but not taken (the database's
        clock may trail ours) is looked at again once the slack has passed."""
        pending = self._scheduled[lane]
        while pending and (pending[0][0] <= now - CLOCK_SLACK or pending[0][1] in claimed):
            heapq.heappop(pending)
        fallback = now + self.settings.worker_poll_interval
        return min(fallback, max(pending[0][0], now + CLOCK_SLACK)) if pending else fallback

    def _start(self, jobs: list[ClaimedJob], contexts: dict[int, MessageContext]) -> None:
        for job in jobs:
            ctx = contexts.get(job.message_id) if job.message_id is not None else None
            task = asyncio.create_task(self._run_one(job, ctx))
            self._tasks[task] = job
            self._running[job.lane] = self._running.get(job.lane, 0) + 1
            task.add_done_callback(self._finished)
        metrics.JOBS_IN_FLIGHT.set(len(self._tasks))

    def _finished(self, task: asyncio.Task[None]) -> None:
        job = self._tasks.pop(task, None)
        if job is not None:
            self._running[job.lane] -= 1
            if job.lane in self._saturated:
                self._due[job.lane] = 0.0  # a slot is free, and more may be waiting
                self._empty.discard(job.lane)
        metrics.JOBS_IN_FLIGHT.set(len(self._tasks))
        self.wake_signal.set()

    async def _run_one(self, job: ClaimedJob, ctx: MessageContext | None) -> None:
        # Every log line of this job carries what it is about (this task's own context).
        message = ctx.message if ctx is not None else None
        structlog.contextvars.bind_contextvars(
            job_id=job.id,
            job_kind=job.kind,
            location_id=job.location_id,
            account_id=job.account_id,
            message_id=message.ghl_message_id if message is not None else None,
            gateway=message.gateway if message is not None else None,
        )
        started = time.monotonic()
        transition: Transition | None
        try:
            transition = await self.dispatcher.run(job, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job_crashed", job_id=job.id, kind=job.kind)
            transition = self.dispatcher.crashed(job, ctx, exc)
        metrics.JOB_SECONDS.labels(job.kind).observe(time.monotonic() - started)
        if transition is None:
            return
        try:
            await self.store.run(
                lambda session: job_store.apply(session, job, self.worker_id, transition),
                group=self._outcomes,
            )
        except Exception:
            # The outcome could not be written: the lease runs out and the job is reclaimed
            # (a send then resumes as "maybe sent", never blind).
            log.exception("transition_failed", job_id=job.id, kind=job.kind)
            return
        for new_job in transition.enqueue:
            self.wake_at(new_job.lane, new_job.run_at)
        if transition.fate in ("next", "retry"):
            self.wake_at(transition.lane or job.lane, transition.run_at, job.id)

    async def _heartbeat(self) -> None:
        """Renew the leases of running jobs; put back the jobs of workers that died.

        A lease only says "this worker is alive"; without renewal a job still running when its
        lease ran out (a slow gateway) would be claimed a second time and run twice at once.
        """
        interval = self.settings.worker_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                async with self.store.write() as session:
                    jobs = list(self._tasks.values())
                    if jobs:
                        await job_store.renew(
                            session,
                            self.worker_id,
                            jobs,
                            lease_seconds=self.settings.worker_lease_seconds,
                        )
                    reaped = await job_store.reap(session)
                if reaped:
                    log.warning("jobs_reclaimed", count=reaped)
                    self.wake()

    async def _idle(self) -> None:
        """Sleep until the next job of a lane with free slots falls due, or until this process
        queues work. What falls due is known from this process's own wakes; the queue itself
        (one cheap read) is looked at once per poll interval, for other processes' work."""
        self.wake_signal.clear()  # a wake from here on ends the sleep; earlier ones set _due
        poll = self.settings.worker_poll_interval
        if self.listener is not None and self.listener.listening:
            poll = max(poll, LISTENING_POLL_SECONDS)
        lanes = [lane for lane, slots in self.capacity.items() if self._running[lane] < slots]
        if lanes and time.monotonic() - self._last_read >= self.settings.worker_poll_interval:
            await self._read_due(lanes, poll)
        now = time.monotonic()
        timeout = poll
        for lane in lanes:
            if lane not in self._empty:
                timeout = min(timeout, self._due[lane] - now)
        if timeout > 0:
            await self.wake_signal.wait(timeout)

    async def _read_due(self, lanes: list[str], poll: float) -> None:
        wakes = dict(self._wakes)
        try:
            async with self.store.read() as session:
                due = await job_store.next_due_by_lane(session, lanes)
        except Exception:
            return
        self._last_read = now = time.monotonic()
        now_wall = datetime.now(UTC)
        for lane in lanes:
            if self._wakes[lane] != wakes[lane]:
                continue  # woken while the read was in flight: the wake is newer
            when = due.get(lane)
            if when is None:
                self._due[lane] = now + poll
                self._empty.add(lane)
                continue
            self._empty.discard(lane)
            self._due[lane] = now + max(0.0, (when - now_wall).total_seconds())

    async def _drain(self) -> None:
        """Give in-flight jobs the grace period, then cancel and hand the rest back."""
        if not self._tasks:
            return
        tasks = list(self._tasks)
        log.info("worker_draining", in_flight=len(tasks))
        _done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_grace_seconds)
        if not pending:
            return
        leftover = [self._tasks[task].id for task in pending if task in self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        async with self.store.write() as session:
            released = await job_store.release(session, self.worker_id, leftover)
        log.info("worker_released_jobs", released=released)
