"""Access to the lifespan-owned resources from a request."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from fastapi import Request

if TYPE_CHECKING:
    from castbridge.resources import Resources


def resources_of(request: Request) -> Resources:
    return cast("Resources", request.app.state.resources)
