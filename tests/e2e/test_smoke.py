"""One message through the whole path: signed webhook -> Cast -> delivery report -> HighLevel."""

from __future__ import annotations

from pathlib import Path

from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import run_stack, wait_for


async def test_message_reaches_delivered(tmp_path: Path) -> None:
    """A PH message sent after a real OAuth install ends as `delivered` in HighLevel."""
    async with run_stack(
        tmp_path, ghl_config=GHLSandboxConfig(not_downstreamed_seconds=1.0)
    ) as stack:
        await stack.install()
        result = await stack.ghl.send_delivery_webhook(
            stack.delivery_url, phone="+639171234567", message="hello"
        )
        assert result.status_code == 200
        assert await wait_for(lambda: stack.ghl.statuses(result.message_id), within=30)
        assert stack.ghl.statuses(result.message_id) == ["delivered"]
