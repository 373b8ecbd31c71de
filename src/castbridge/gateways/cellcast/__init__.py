"""Cellcast (Australia, new API): typed client, error tree and the Gateway adapter (§3)."""

from castbridge.gateways.cellcast.adapter import (
    CELLCAST_CAPABILITIES,
    CellcastGateway,
    build,
    custom_string,
    is_two_way_sender,
    read_number,
    sender_problem,
)
from castbridge.gateways.cellcast.client import (
    COUNTRY_CODE,
    SHARED_SENDER,
    CellcastClient,
    CellcastPacing,
    crlf,
)
from castbridge.gateways.cellcast.envelope import Envelope, read_envelope
from castbridge.gateways.cellcast.errors import (
    GATEWAY,
    CellcastBadResponseError,
    CellcastCredentialsError,
    CellcastError,
    CellcastInsufficientCreditsError,
    CellcastNotFoundError,
    CellcastNotSentError,
    CellcastOptedOutError,
    CellcastRateLimitedError,
    CellcastRefusedError,
    CellcastSenderError,
    CellcastUnavailableError,
    CellcastValidationError,
    parse_retry_after,
    translate_error,
)
from castbridge.gateways.cellcast.inbound import Cursor
from castbridge.gateways.cellcast.retry import RetryPolicy
from castbridge.gateways.cellcast.settings import (
    DEFAULT_API_URL,
    DEFAULT_MAX_PARTS,
    DEFAULT_RATE_LIMIT,
    CellcastAccountSettings,
    CellcastDefaults,
    check_key,
    request_limit,
)
from castbridge.gateways.cellcast.statuses import to_delivery_status
from castbridge.gateways.cellcast.webhooks import parse_webhook
from castbridge.gateways.spec import GatewaySpec

SPEC = GatewaySpec(
    capabilities=CELLCAST_CAPABILITIES,
    defaults=CellcastDefaults,
    account_settings=CellcastAccountSettings,
    build=build,
    check_key=check_key,
    default_channel="sms",
)

__all__ = [
    "CELLCAST_CAPABILITIES",
    "COUNTRY_CODE",
    "DEFAULT_API_URL",
    "DEFAULT_MAX_PARTS",
    "DEFAULT_RATE_LIMIT",
    "GATEWAY",
    "SHARED_SENDER",
    "SPEC",
    "CellcastAccountSettings",
    "CellcastBadResponseError",
    "CellcastClient",
    "CellcastCredentialsError",
    "CellcastDefaults",
    "CellcastError",
    "CellcastGateway",
    "CellcastInsufficientCreditsError",
    "CellcastNotFoundError",
    "CellcastNotSentError",
    "CellcastOptedOutError",
    "CellcastPacing",
    "CellcastRateLimitedError",
    "CellcastRefusedError",
    "CellcastSenderError",
    "CellcastUnavailableError",
    "CellcastValidationError",
    "Cursor",
    "Envelope",
    "RetryPolicy",
    "build",
    "check_key",
    "crlf",
    "custom_string",
    "is_two_way_sender",
    "parse_retry_after",
    "parse_webhook",
    "read_envelope",
    "read_number",
    "request_limit",
    "sender_problem",
    "to_delivery_status",
    "translate_error",
]
