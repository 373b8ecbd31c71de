"""A faithful local UGSMS (gateways.md §4): v2 with API keys, v1 refusing them, no statuses."""

from castbridge.sandbox.ugsms.app import create_ugsms_sandbox
from castbridge.sandbox.ugsms.config import (
    DEFAULT_API_KEY,
    DEFAULT_PASSWORD,
    DEFAULT_SENDER_ID,
    DEFAULT_USERNAME,
    Faults,
    SandboxAccount,
    UgsmsSandboxConfig,
)
from castbridge.sandbox.ugsms.state import (
    V1_CREDENTIALS_REQUIRED,
    SandboxError,
    SandboxMessage,
    SandboxStats,
    UgsmsSandbox,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_PASSWORD",
    "DEFAULT_SENDER_ID",
    "DEFAULT_USERNAME",
    "V1_CREDENTIALS_REQUIRED",
    "Faults",
    "SandboxAccount",
    "SandboxError",
    "SandboxMessage",
    "SandboxStats",
    "UgsmsSandbox",
    "UgsmsSandboxConfig",
    "create_ugsms_sandbox",
]
