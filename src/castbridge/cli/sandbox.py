"""`castbridge sandbox` and `castbridge demo` (being written)."""

from __future__ import annotations


def sandbox() -> None:
    """Start the sandboxes."""


def demo() -> None:
    """Run the demo."""
