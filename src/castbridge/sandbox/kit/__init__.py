"""The small kit every gateway sandbox is built from: clock, debt bucket, faults, admin, pushes."""

from castbridge.sandbox.kit.bucket import DebtBucket
from castbridge.sandbox.kit.clock import SandboxClock
from castbridge.sandbox.kit.faults import FaultMiddleware, Faults, FaultStats, KitSandbox
from castbridge.sandbox.kit.push import Delivery, WebhookPusher

__all__ = [
    "DebtBucket",
    "Delivery",
    "FaultMiddleware",
    "FaultStats",
    "Faults",
    "KitSandbox",
    "SandboxClock",
    "WebhookPusher",
]
