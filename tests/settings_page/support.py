"""Driving the settings page's API as the page does, recording every JSON answer it receives."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx2

from castbridge.sandbox.ghl.custom_page import USERS
from castbridge.sandbox.stack import Stack
from tests.support.sso import context_payload

OTHER_COMPANY = "sbxOtherCompany00001"
OTHER_LOCATION = "sbxOtherLocation0001"


def payload_for(
    stack: Stack, role: str = "admin", location: str | None = "default", **extra: Any
) -> str:
    """An encrypted context for a sandbox user (the ids HighLevel's `GET /users` knows), made by
    OpenSSL."""
    user_id, name, email = USERS.get(role, USERS["user"])
    fields: dict[str, Any] = {
        "userId": user_id,
        "companyId": stack.ghl.config.company_id,
        "role": role,
        "type": "agency",
        "userName": name,
        "email": email,
    }
    if location is not None:
        fields["activeLocation"] = (
            stack.ghl.default_location() if location == "default" else location
        )
    fields.update(extra)
    return context_payload(stack.ghl.config.sso_key, **fields)


@dataclass
class PageClient:
    """The page's side of the API: one session token in memory, every answer kept."""

    http: httpx2.AsyncClient
    token: str | None = None
    answers: list[tuple[str, int, str]] = field(default_factory=list)

    async def call(
        self, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> httpx2.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self.token is not None and "authorization" not in {k.lower() for k in headers}:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            kwargs["content"] = json.dumps(body)
            headers["Content-Type"] = "application/json"
        response = await self.http.request(method, path, headers=headers, **kwargs)
        self.answers.append((path, response.status_code, response.text))
        return response

    async def login(self, payload: str) -> httpx2.Response:
        response = await self.call("POST", "/app/session", {"encryptedData": payload})
        if response.status_code == 200:
            self.token = response.json()["token"]
        return response
