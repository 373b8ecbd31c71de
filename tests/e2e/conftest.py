"""End-to-end fixtures: every test logs to the live stderr, whatever ran before it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from castbridge.logging import configure_logging
from tests.e2e.support import restored_logging


@pytest.fixture(autouse=True)
def _live_logging() -> Iterator[None]:
    """CliRunner-based tests leave logging on streams they later close; castbridge running in
    this process would then fail on its first log line. JSON lines, shown for a failed test."""
    with restored_logging():
        configure_logging("WARNING", "json")
        yield
