"""Reading and parsing request bodies at the edge: size limits and precise JSON errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

M = TypeVar("M", bound=BaseModel)


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (never buffered whole)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise HTTPException(413, f"request body is larger than {limit} bytes")
        except ValueError:
            raise HTTPException(400, "Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"request body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The sender hung up mid-body (its own timeout, say): nothing was acknowledged or
        # stored. Left alone it reached the catch-all handler and was logged as a server error.
        raise HTTPException(400, "the client disconnected before sending the whole body") from None
    return b"".join(chunks)


class _NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which RFC 8259 JSON does not have.
    raise _NotJSON(f"{name} is not a JSON value")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON object from UTF-8 bytes, or 400 saying what is wrong."""
    if not raw:
        raise HTTPException(400, "request body is empty; a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "request body is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except _NotJSON as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPException(400, "request body JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc.msg}") from None
    except ValueError:
        # An integer of more than 4,300 digits: Python refuses to convert it with a plain
        # ValueError (not a JSONDecodeError). Uncaught it answered 503, which asks HighLevel to
        # retry the same poison body forever.
        raise HTTPException(400, "request body is not valid JSON: a number is too long") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "request body must be a JSON object")
    return value


def validate_model(model: type[M], data: dict[str, Any]) -> M:
    """The payload as `model`, or 422 listing each bad field (values are not echoed back)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(part) for part in error["loc"]), "problem": error["msg"]}
            for error in exc.errors(include_input=False, include_url=False)
        ]
        # "error" like every other error body (400s, 401s and the app's own 422 handler).
        raise HTTPException(422, {"error": "invalid payload", "errors": problems}) from None
