"""When reconciliation looks at a gateway's records again (shared by send and reconcile)."""

from __future__ import annotations

# Seconds between checks (the last repeats).
CHECK_GAPS = (20.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def check_gap(settle_seconds: float, checks: int) -> float:
    """Seconds until the next look, scaled to how long the gateway's records may lag."""
    scale = max(settle_seconds, 1.0) / 60.0
    return max(1.0, CHECK_GAPS[min(checks, len(CHECK_GAPS) - 1)] * scale)
