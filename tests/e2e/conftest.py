"""End-to-end fixtures: castbridge in this process logs to a live stream, whatever ran before."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from tests.e2e.support import restored_logging


@pytest.fixture(autouse=True)
def _live_logging() -> Iterator[None]:
    """A CLI run under CliRunner leaves structlog writing to a stream it closes afterwards, and
    castbridge in this process would then fail on its first log line; warnings and errors go to
    the current stderr instead (shown for a failed test)."""
    with restored_logging():
        structlog.configure(
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        )
        yield
