"""Reading and parsing request bodies at the edge: size limits and precise JSON errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON object from UTF-8 bytes, or 400 saying what is wrong."""
    if not raw:
        raise HTTPException(400, "request body is empty; a JSON object is required")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "request body is not valid UTF-8") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise HTTPException(400, "request body JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc.msg}") from None
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
        raise HTTPException(422, {"message": "invalid payload", "errors": problems}) from None
