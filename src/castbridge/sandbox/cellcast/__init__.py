"""A faithful local Cellcast (new API, gateways.md §3): test without spending credits."""

from castbridge.sandbox.cellcast.app import create_cellcast_sandbox
from castbridge.sandbox.cellcast.config import (
    DEDICATED_NUMBER,
    DEFAULT_API_KEY,
    DEFAULT_SENDER,
    NO_ID_NUMBER,
    REFUSED_NUMBER,
    SECOND_API_KEY,
    SHARED_NUMBER,
    UNDELIVERABLE_NUMBER,
    CellcastSandboxConfig,
    Faults,
    SandboxAccount,
)
from castbridge.sandbox.cellcast.records import SandboxError, SandboxMessage, SandboxReply
from castbridge.sandbox.cellcast.state import CellcastSandbox

__all__ = [
    "DEDICATED_NUMBER",
    "DEFAULT_API_KEY",
    "DEFAULT_SENDER",
    "NO_ID_NUMBER",
    "REFUSED_NUMBER",
    "SECOND_API_KEY",
    "SHARED_NUMBER",
    "UNDELIVERABLE_NUMBER",
    "CellcastSandbox",
    "CellcastSandboxConfig",
    "Faults",
    "SandboxAccount",
    "SandboxError",
    "SandboxMessage",
    "SandboxReply",
    "create_cellcast_sandbox",
]
