"""The worker: claim due jobs with a lease, run them concurrently, stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from castbridge import metrics
from castbridge.bridge import Bridge
from castbridge.config import Settings
from castbridge.logging import get_logger
from castbridge.store import repository as repo
from castbridge.store.repository import ClaimedJob

log = get_logger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs up to `worker_concurrency` jobs at once; several workers may share one database.

    Nothing lives only in memory: a job is claimed with a lease in the database, and a worker
    killed mid-job leaves it to be reclaimed when the lease runs out. Sends are then repeated
    with the same idempotency key, so Cast replays instead of sending twice.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        bridge: Bridge,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.bridge = bridge
        self.worker_id = bridge.worker_id
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: dict[asyncio.Task[None], ClaimedJob] = {}

    def wake(self) -> None:
        """New work was just committed by this process: look now, not at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        log.info("worker_started", worker_id=self.worker_id)
        heartbeat = asyncio.create_task(self._renew_leases(), name="castbridge-lease-renewal")
        try:
            while not self._stopping.is_set():
                claimed = await self._claim()
                if not claimed:
                    await self._idle()
        finally:
            try:
                await self._drain()  # leases keep being renewed while in-flight jobs finish
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
            log.info("worker_stopped", worker_id=self.worker_id)

    async def _renew_leases(self) -> None:
        """Keep extending the leases of the jobs this worker is running.

        A lease only says "this worker is alive". Without renewal, a job still running when its
        lease ran out (waiting on a rate limiter, a slow gateway) was claimed a second time and
        ran twice at once: a repeated Cast call and a repeated HighLevel status update.
        """
        interval = self.settings.worker_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            jobs = list(self._tasks.values())
            if not jobs:
                continue
            try:
                async with self.sessions.begin() as session:
                    await repo.renew_leases(
                        session,
                        self.worker_id,
                        jobs,
                        lease_seconds=self.settings.worker_lease_seconds,
                    )
            except Exception:
                log.exception("lease_renewal_failed", jobs=len(jobs))

    async def _claim(self) -> int:
        free = self.settings.worker_concurrency - len(self._tasks)
        if free <= 0:
            await self._wait_for_slot()
            return 1
        try:
            async with self.sessions.begin() as session:
                jobs = await repo.claim_jobs(
                    session,
                    worker_id=self.worker_id,
                    limit=free,
                    lease_seconds=self.settings.worker_lease_seconds,
                )
        except Exception:
            log.exception("claim_failed")
            return 0
        for job in jobs:
            task = asyncio.create_task(self._run_one(job))
            self._tasks[task] = job
            task.add_done_callback(self._tasks.pop)
        metrics.JOBS_IN_FLIGHT.set(len(self._tasks))
        return len(jobs)

    async def _run_one(self, job: ClaimedJob) -> None:
        try:
            await self.bridge.run(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug or a database hiccup: put the job back with backoff so it is not lost, and
            # let the attempt count bound how often it can recur.
            log.exception("job_crashed", job_id=job.id, kind=job.kind)
            with contextlib.suppress(Exception):
                async with self.sessions.begin() as session:
                    if job.attempts >= self.settings.send_max_attempts * 2:
                        await repo.kill_job(session, job, self.worker_id, f"crashed: {exc!r}")
                    else:
                        await repo.reschedule_job(
                            session,
                            job,
                            self.worker_id,
                            run_at=repo.utcnow() + timedelta(seconds=min(300, 2**job.attempts)),
                            error=f"crashed: {exc!r}",
                        )
        finally:
            self._wake.set()

    async def _wait_for_slot(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.settings.worker_poll_interval)

    async def _idle(self) -> None:
        self._wake.clear()
        timeout = self.settings.worker_poll_interval
        with contextlib.suppress(Exception):
            async with self.sessions() as session:
                due = await repo.next_due_at(session)
            if due is not None:
                timeout = min(timeout, max(0.0, (due - repo.utcnow()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.005))

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
        async with self.sessions.begin() as session:
            released = await repo.release_jobs(session, self.worker_id, leftover)
        log.info("worker_released_jobs", released=released)
