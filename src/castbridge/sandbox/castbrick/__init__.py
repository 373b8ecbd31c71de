"""A faithful local CastBrick (gateways.md §2): develop and test without spending AOA.

The webhook bodies it posts are documented in `castbridge.sandbox.castbrick.events`.
"""

from castbridge.sandbox.castbrick.app import create_castbrick_sandbox
from castbridge.sandbox.castbrick.config import (
    CASTBRICK_DEFAULT_SENDER,
    DEFAULT_API_KEY,
    DEFAULT_INBOUND_NUMBER,
    DEFAULT_SENDER_ID,
    DEFAULT_TEST_KEY,
    UNDELIVERABLE_NUMBER,
    CastBrickSandboxConfig,
    Faults,
    SandboxAccount,
)
from castbridge.sandbox.castbrick.core import (
    EmittedEvent,
    SandboxError,
    SandboxMessage,
    SandboxStats,
    SandboxWebhook,
)
from castbridge.sandbox.castbrick.events import KNOWN_EVENT_TYPES, STATUS_EVENTS
from castbridge.sandbox.castbrick.state import CastBrickSandbox

__all__ = [
    "CASTBRICK_DEFAULT_SENDER",
    "DEFAULT_API_KEY",
    "DEFAULT_INBOUND_NUMBER",
    "DEFAULT_SENDER_ID",
    "DEFAULT_TEST_KEY",
    "KNOWN_EVENT_TYPES",
    "STATUS_EVENTS",
    "UNDELIVERABLE_NUMBER",
    "CastBrickSandbox",
    "CastBrickSandboxConfig",
    "EmittedEvent",
    "Faults",
    "SandboxAccount",
    "SandboxError",
    "SandboxMessage",
    "SandboxStats",
    "SandboxWebhook",
    "create_castbrick_sandbox",
]
