"""Running `castbridge ...` in-process against a test's settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import structlog
from typer.testing import CliRunner, Result

from castbridge.cli import app as cli_app
from castbridge.config import Settings, settings_env


async def cli(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    """Run `castbridge ARGS` in a thread (the CLI runs its own event loop) against `settings`.

    The CLI configures logging for the whole process, onto CliRunner's streams, which are
    closed afterwards; the previous set-up is put back so castbridge here keeps logging.
    Parse `result.stdout`: castbridge's own log lines may land in the captured stderr.
    """
    env = {
        **settings_env(settings),
        "COLUMNS": "250",
        "CASTBRIDGE_LOG_LEVEL": "WARNING",
        "CASTBRIDGE_ENV_FILE": "/dev/null",
    }
    with restored_logging():
        return await asyncio.to_thread(
            CliRunner().invoke, cli_app, list(args), env=env, input=stdin
        )


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Put structlog's and the root logger's configuration back as it was."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
