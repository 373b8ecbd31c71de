"""`castbridge serve` and `castbridge worker`: the long-running processes."""

from __future__ import annotations

import asyncio
import signal

import typer
import uvicorn

from castbridge.app import create_app
from castbridge.cli._common import settings_or_exit
from castbridge.resources import open_resources


def serve(
    host: str | None = typer.Option(None, help="Override CASTBRIDGE_HOST."),
    port: int | None = typer.Option(None, help="Override CASTBRIDGE_PORT."),
    worker: bool | None = typer.Option(
        None, "--worker/--no-worker", help="Run the worker in this process (default: yes)."
    ),
) -> None:
    """Run the web app (webhooks, OAuth, health) and, by default, the worker."""
    settings = settings_or_exit()
    app = create_app(settings, run_worker=worker)
    # uvicorn turns SIGTERM into a graceful shutdown: stop accepting, then the lifespan stops
    # the worker, which finishes or hands back in-flight jobs within the grace period.
    # Once shut down, uvicorn re-raises the signal into the handler it found at start, so with
    # Python's default handler the process would die of SIGTERM (exit 143) even after a clean
    # drain. Installing this handler first makes a graceful stop exit 0.
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.run(
            app,
            host=host or settings.host,
            port=port or settings.port,
            log_level=settings.log_level.lower(),
            # uvicorn's own logging set-up would print plain text beside castbridge's JSON;
            # without it, its records go through castbridge's (configure_logging).
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds) + 5,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def worker() -> None:
    """Run only the worker (scale out beside `castbridge serve --no-worker`)."""
    settings = settings_or_exit()
    if settings.worker_metrics_port is not None:
        from prometheus_client import start_http_server

        # A daemon thread: it dies with the process and needs no shutdown.
        start_http_server(settings.worker_metrics_port, addr=settings.host)

    async def _go() -> None:
        async with open_resources(settings, with_worker=True) as resources:
            assert resources.worker is not None
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, resources.worker.stop)
            await resources.worker.run()

    asyncio.run(_go())
