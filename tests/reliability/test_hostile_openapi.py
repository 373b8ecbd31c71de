"""Schemathesis against castbridge's own OpenAPI document: every route, never a 5xx.

castbridge and both sandboxes are served on loopback from a background thread; Schemathesis
loads `/openapi.json` over HTTP and sends valid (positive) and invalid (negative) requests for
every operation. Three runs: signature checks on with unsigned requests (webhooks mostly 401),
signature checks on with every body signed by the sandbox's HighLevel key (bodies reach
validation and intake), and `GHL_REQUIRE_SIGNATURE=false`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error

from castbridge.sandbox.ghl import GHLSandbox
from tests.reliability.support import (
    FAST,
    BackgroundStack,
    cast_config,
    crashed_jobs,
    ghl_config,
    report,
    sized,
)

EXAMPLES_PER_OPERATION = sized(100, 1_000)


class HighLevelSignature(requests.auth.AuthBase):
    """Sign the exact prepared body with the sandbox's Ed25519 key, as HighLevel does."""

    def __init__(self, ghl: GHLSandbox) -> None:
        self.ghl = ghl

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes):
            request.headers.update(self.ghl.sign(body))
        return request


def fuzz_operation(
    operation: APIOperation,
    base_url: str,
    session: requests.Session,
    seen: Counter[tuple[str, int]],
) -> None:
    """EXAMPLES_PER_OPERATION positive and negative cases against one operation."""
    label = f"{operation.method.upper()} {operation.path}"
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Case) -> None:
        response = case.call(base_url=base_url, session=session, timeout=30)
        seen[(label, response.status_code)] += 1
        case.validate_response(response, checks=[not_a_server_error])

    fuzz()


@pytest.mark.parametrize(
    ("require_signature", "sign"),
    [(True, False), (True, True), (False, False)],
    ids=["signatures-on-unsigned", "signatures-on-signed", "signatures-off"],
)
def test_openapi_routes_never_answer_5xx(
    tmp_path: Path, require_signature: bool, sign: bool
) -> None:
    """Schemathesis positive and negative cases for every documented route: zero 5xx."""
    with BackgroundStack(
        tmp_path,
        cast_config=cast_config(),
        ghl_config=ghl_config(),
        ghl_require_signature=require_signature,
        **FAST,
    ) as background:
        stack = background.stack
        background.run(stack.install())
        schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        seen: Counter[tuple[str, int]] = Counter()
        with requests.Session() as session:
            if sign:
                session.auth = HighLevelSignature(stack.ghl)
            for operation in operations:
                fuzz_operation(operation, stack.url, session, seen)
        crashed = background.run(crashed_jobs(stack.settings))
    by_route: dict[str, dict[int, int]] = {}
    for (label, status), count in sorted(seen.items()):
        by_route.setdefault(label, {})[status] = count
    mode = "on" if require_signature else "off"
    report(
        f"schemathesis signatures={mode}{' signed' if sign else ''}",
        {
            "operations": len(operations),
            "requests": sum(seen.values()),
            "5xx": sum(n for (_, status), n in seen.items() if status >= 500),
            **{label: statuses for label, statuses in by_route.items()},
        },
    )
    assert len(operations) >= 7, [f"{op.method} {op.path}" for op in operations]
    assert not [key for key in seen if key[1] >= 500], seen
    assert crashed == [], crashed
