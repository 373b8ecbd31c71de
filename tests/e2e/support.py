"""End-to-end test settings: fast timings and sandbox configs (the shared helpers for webhooks,
the database, the CLI and castbridge as a process live in tests/support)."""

from __future__ import annotations

from typing import Any

from castbridge.sandbox.cast import (
    DEFAULT_API_KEY,
    DEFAULT_SENDER_ID,
    CastSandboxConfig,
    SandboxAccount,
    SenderIdSpec,
)
from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.process import Castbridge
from tests.support.cli import cli, restored_logging
from tests.support.db import attempts_of, job_states, messages_by_ghl_id, open_jobs
from tests.support.webhooks import (
    Posted,
    all_terminal,
    interleave,
    payloads,
    post_all,
    post_signed,
    restart_window,
    terminal,
)

__all__ = [
    "Castbridge",
    "Posted",
    "all_terminal",
    "attempts_of",
    "cli",
    "interleave",
    "job_states",
    "messages_by_ghl_id",
    "open_jobs",
    "payloads",
    "post_all",
    "post_signed",
    "restart_window",
    "restored_logging",
    "terminal",
]

PH_MOBILE = "+63917{:07d}"
LOCATIONS = ("sbxLocationAAAAAAAAA1", "sbxLocationBBBBBBBBB2", "sbxLocationCCCCCCCCC3")

# castbridge overrides for run_stack: polls, reports and retries in fractions of a second.
# Cast's limits are raised on both sides (castbridge paces under the sandbox's) so hundreds of
# messages fit the time budget; HighLevel keeps its real 100 requests / 10 s per location.
FAST: dict[str, Any] = {
    "status_poll_schedule": "0.5,0.5",
    "report_initial_delay_seconds": 1.0,
    "worker_poll_interval": 0.1,
    "retry_base_seconds": 0.2,
    "retry_cap_seconds": 1.0,
    "gateway_settings": {"cast": {"rate_limit": 100.0, "ip_rate_limit": 300.0}},
}


def cast_config(*extra: SandboxAccount, **values: Any) -> CastSandboxConfig:
    """The Cast sandbox with fast status timelines and room for a few hundred messages."""
    accounts = [
        SandboxAccount(api_key=DEFAULT_API_KEY, credits=100_000, rate_limit=200.0),
        *extra,
    ]
    defaults: dict[str, Any] = {
        "accounts": accounts,
        "ip_rate": 1000.0,
        "ip_burst": 1000.0,
        "pending_after_seconds": 0.2,
        "final_after_seconds": 0.4,
        "seed": 7,
    }
    defaults.update(values)
    return CastSandboxConfig(**defaults)


def ghl_config(**values: Any) -> GHLSandboxConfig:
    defaults: dict[str, Any] = {"not_downstreamed_seconds": 1.0, "seed": 7}
    defaults.update(values)
    return GHLSandboxConfig(**defaults)


def second_account(api_key: str, sender_id: str) -> SandboxAccount:
    return SandboxAccount(
        api_key=api_key,
        id=3,
        name="Second Account",
        credits=1_000,
        rate_limit=200.0,
        sender_ids=[
            SenderIdSpec(sender_id=sender_id, label="Own"),
            SenderIdSpec(sender_id=DEFAULT_SENDER_ID, label="Shared"),
        ],
    )
