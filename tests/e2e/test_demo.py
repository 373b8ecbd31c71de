"""`castbridge demo`, the README's first command: every expectation it prints holds."""

from __future__ import annotations

import io

from rich.console import Console

from castbridge.demo import run_demo


async def test_the_demo_passes_and_shows_both_directions() -> None:
    out = io.StringIO()
    passed = await run_demo(Console(file=out, width=200))
    printed = out.getvalue()
    assert passed, printed
    assert "all expectations held" in printed
    assert "two-way (replies and STOP)" in printed
    assert printed.count("contact SMS DND active") == 2
    assert "+639171234567" not in printed  # numbers are masked in the table
