"""A faithful local HighLevel (ghl.md): OAuth install, the provider APIs and signed webhooks.

In process::

    app = create_ghl_sandbox(GHLSandboxConfig(not_downstreamed_seconds=1.0))
    sandbox: GHLSandbox = app.state.sandbox
    async with serve_app(app) as url:       # castbridge: GHL_API_URL = GHL_MARKETPLACE_URL = url
        keys = sandbox.webhook_keys_pem      # castbridge: GHL_WEBHOOK_KEYS
        result = await sandbox.send_delivery_webhook(delivery_url, phone="+63917...", message="hi")
        sandbox.statuses(result.message_id)  # what castbridge reported, in order

As a subprocess, the same through `/_sandbox/...`: `GET keys`, `GET config`, `GET stats`,
`GET messages/{id}`, `GET inbound`, `POST deliver`, `POST events`, `POST locations`,
`POST faults`, `POST codes`, `POST revoke/{resource_id}` (see admin.py).
"""

from castbridge.sandbox.ghl.app import create_ghl_sandbox
from castbridge.sandbox.ghl.config import GHLSandboxConfig
from castbridge.sandbox.ghl.state import DeliveryResult, GHLSandbox

__all__ = ["DeliveryResult", "GHLSandbox", "GHLSandboxConfig", "create_ghl_sandbox"]
