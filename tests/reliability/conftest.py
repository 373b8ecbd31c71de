"""Quiet logs for in-process castbridge runs (so `-s` shows the figures); restored afterwards."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


def _not_a_deliberate_drop(record: logging.LogRecord) -> bool:
    # The Cast sandbox drops connections halfway through an answer on purpose (a fault), and
    # uvicorn reports each one.
    return "ASGI callable returned without completing response" not in record.getMessage()


@pytest.fixture(autouse=True, scope="module")
def _errors_only_logs() -> Iterator[None]:
    """castbridge and the sandboxes in this process log errors only during these runs."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addFilter(_not_a_deliberate_drop)
    try:
        yield
    finally:
        uvicorn_error.removeFilter(_not_a_deliberate_drop)
        structlog.configure(**saved)
