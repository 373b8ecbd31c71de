"""Check requests against HighLevel's own OpenAPI files (test-only; the package never needs them).

`OpenAPIChecker.hook` is an httpx2 request event hook: give it to the AsyncClient a GHLClient
uses in tests and every request it sends is checked — path and method exist in the spec, the
`Version` header is in the operation's enum (and absent where the spec has none), required
query parameters are present and no undeclared ones are sent, and the JSON or form body
validates against the operation's request schema, `$ref`s into common-schemas.json included.
`response_hook` checks the other direction (the sandbox's answers) wherever the spec declares
a JSON schema for the status code.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def _find_spec_dir() -> Path:
    """CI keeps ../shared beside the checkout (/work/shared for /work/main); a clone elsewhere
    can point CASTBRIDGE_SHARED_DIR at it. The shipped package never needs these files."""
    override = os.environ.get("CASTBRIDGE_SHARED_DIR")
    if override:
        return Path(override) / "reference" / "ghl-openapi"
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "reference" / "ghl-openapi"
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "reference" / "ghl-openapi"


SPEC_DIR = _find_spec_dir()
BASE_URI = "https://ghl-openapi.invalid/"
# Where each file lives in HighLevel's repository, so "../common/common-schemas.json#/..."
# resolves exactly as it does there (README.md in the spec folder).
SPEC_FILES = {
    "apps/oauth.json": "oauth.json",
    "apps/conversations.json": "conversations.json",
    "apps/contacts.json": "contacts.json",
    "common/common-schemas.json": "common-schemas.json",
}


def _patch_known_spec_errors(name: str, spec: dict[str, Any]) -> None:
    """Where the spec is known to be wrong (ghl.md §9), check what HighLevel really accepts."""
    if name != "apps/conversations.json":
        return
    body = spec["components"]["schemas"]["ProcessMessageBodyDto"]
    # `direction` is typed `object` with default "outbound", but HighLevel takes the strings
    # "inbound"/"outbound"; castbridge must send the string "inbound" (pitfall #4).
    body["properties"]["direction"] = {"type": "string", "enum": ["inbound", "outbound"]}
    # `required` lists conversationId, but the 2021-04-15 endpoint page says "either
    # conversationId or contactId"; castbridge sends conversationId only when it knows it.
    body["required"] = [item for item in body["required"] if item != "conversationId"]


@dataclass(frozen=True)
class Operation:
    file: str
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


class OpenAPIChecker:
    """Validates httpx2 requests against the HighLevel OpenAPI files; keeps what it saw."""

    def __init__(self, spec_dir: Path = SPEC_DIR) -> None:
        if not spec_dir.is_dir():
            raise FileNotFoundError(f"HighLevel OpenAPI files not found at {spec_dir}")
        self.specs: dict[str, dict[str, Any]] = {}
        resources: list[tuple[str, Resource[Any]]] = []
        for name, filename in SPEC_FILES.items():
            spec = json.loads((spec_dir / filename).read_text(encoding="utf-8"))
            _patch_known_spec_errors(name, spec)
            self.specs[name] = spec
            resources.append((BASE_URI + name, DRAFT202012.create_resource(spec)))
        self.registry: Registry[Any] = Registry().with_resources(resources)
        self.operations: list[Operation] = []
        for name, spec in self.specs.items():
            for template, item in spec.get("paths", {}).items():
                for method, operation in item.items():
                    if not isinstance(operation, dict):
                        continue
                    regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
                    self.operations.append(
                        Operation(name, method.upper(), template, re.compile(regex), operation)
                    )
        # Literal paths win over templated ones (/contacts/search/duplicate vs /contacts/{id}).
        self.operations.sort(key=lambda op: op.template.count("{"))
        self.checked: list[str] = []
        self.failures: list[str] = []

    async def hook(self, request: httpx2.Request) -> None:
        """httpx2 `event_hooks={"request": [checker.hook]}`: raise on a non-conforming request."""
        self.check(request)

    async def response_hook(self, response: httpx2.Response) -> None:
        """httpx2 response hook: a body the spec declares for this status must match it."""
        await response.aread()
        self.check_response(response)

    def check_response(self, response: httpx2.Response) -> None:
        operation = self._operation(response.request)
        if operation is None:
            return
        declared = operation.spec.get("responses", {}).get(str(response.status_code), {})
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        if schema is None or not response.content:
            return
        try:
            body = json.loads(response.content)
        except ValueError:
            problems = [f"{operation.label} {response.status_code}: response is not JSON"]
        else:
            problems = [
                f"{operation.label} {response.status_code}: response "
                f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
                for error in self._validator(schema, operation).iter_errors(body)
            ]
        if problems:
            self.failures.extend(problems)
            raise AssertionError("response does not match the spec: " + "; ".join(problems))

    def _validator(self, schema: dict[str, Any], operation: Operation) -> Draft202012Validator:
        schema = copy.deepcopy(schema)
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith(BASE_URI):
            # Relative to the operation's file, "#/..." and "../common/..." alike.
            base = BASE_URI + operation.file
            schema["$ref"] = base + ref if ref.startswith("#") else str(httpx2.URL(base).join(ref))
        return Draft202012Validator(schema, registry=self.registry)

    def check(self, request: httpx2.Request) -> None:
        operation = self._operation(request)
        problems = (
            [f"no operation {request.method} {request.url.path} in the HighLevel spec"]
            if operation is None
            else self._problems(request, operation)
        )
        if problems:
            self.failures.extend(problems)
            raise AssertionError("request does not match the spec: " + "; ".join(problems))
        assert operation is not None
        self.checked.append(operation.label)

    def _operation(self, request: httpx2.Request) -> Operation | None:
        for operation in self.operations:
            if operation.method == request.method and operation.pattern.match(request.url.path):
                return operation
        return None

    def _problems(self, request: httpx2.Request, operation: Operation) -> list[str]:
        problems: list[str] = []
        label = operation.label
        parameters = operation.spec.get("parameters", [])
        version = request.headers.get("version")
        version_params = [p for p in parameters if p["in"] == "header" and p["name"] == "Version"]
        if version_params:
            allowed = version_params[0].get("schema", {}).get("enum", [])
            if version not in allowed:
                problems.append(f"{label}: Version {version!r} not in {allowed}")
        elif version is not None:
            problems.append(f"{label}: sends Version {version!r} but the spec declares none")
        query = dict(request.url.params)
        declared = {p["name"]: p for p in parameters if p["in"] == "query"}
        for name, param in declared.items():
            if param.get("required") and name not in query:
                problems.append(f"{label}: required query parameter {name!r} missing")
            enum = param.get("schema", {}).get("enum")
            if enum and name in query and query[name] not in enum:
                problems.append(f"{label}: query {name}={query[name]!r} not in {enum}")
        for name in query:
            if name not in declared:
                problems.append(f"{label}: query parameter {name!r} is not in the spec")
        problems.extend(self._body_problems(request, operation))
        return problems

    def _body_problems(self, request: httpx2.Request, operation: Operation) -> list[str]:
        label = operation.label
        content = operation.spec.get("requestBody", {}).get("content", {})
        raw = request.content
        if not content:
            return [f"{label}: sends a body but the spec has none"] if raw else []
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in content:
            return [f"{label}: Content-Type {media!r}, spec wants one of {sorted(content)}"]
        body: Any
        if media == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                return [f"{label}: body is not JSON"]
        elif media == "application/x-www-form-urlencoded":
            body = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        else:
            return [f"{label}: cannot check a {media} body"]
        validator = self._validator(content[media]["schema"], operation)
        return [
            f"{label}: body {'/'.join(str(p) for p in error.absolute_path) or '<root>'}: "
            f"{error.message}"
            for error in validator.iter_errors(body)
        ]
