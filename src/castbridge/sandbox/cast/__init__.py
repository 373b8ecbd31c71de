"""A faithful local Cast.ph (gateways.md §1): develop and test without spending credits."""

from castbridge.sandbox.cast.app import create_cast_sandbox
from castbridge.sandbox.cast.config import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    DEFAULT_TEST_KEY,
    FAILING_NUMBER,
    UNDELIVERABLE_NUMBER,
    CastSandboxConfig,
    Faults,
    SandboxAccount,
    SenderIdSpec,
    UnsubscribedEntry,
)
from castbridge.sandbox.cast.state import CastSandbox, SandboxClock, SandboxMessage

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SENDER_ID",
    "DEFAULT_TEST_KEY",
    "FAILING_NUMBER",
    "UNDELIVERABLE_NUMBER",
    "CastSandbox",
    "CastSandboxConfig",
    "Faults",
    "SandboxAccount",
    "SandboxClock",
    "SandboxMessage",
    "SenderIdSpec",
    "UnsubscribedEntry",
    "create_cast_sandbox",
]
