"""The settings page routes: the page, its hashed static assets, the session exchange and the
JSON API the page calls (session checked and rate limited on every call).

CSRF-safe by construction: the API takes the session from the `Authorization: Bearer` header.
The cookie is only a fallback for browsers that lose the in-memory token, and it is honoured
only together with a custom header, which a cross-site form or image cannot send without a
CORS preflight that castbridge never answers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from castbridge.ghl.sso import SSOError, decrypt_user_context
from castbridge.limits import Limit, Throttled
from castbridge.logging import get_logger
from castbridge.settings_page import service, views
from castbridge.settings_page.session import SESSION_KEY_NAME, Sealer, Session, SessionError
from castbridge.store import keyring
from castbridge.web._body import parse_json_object, read_limited
from castbridge.web.deps import resources_of

log = get_logger(__name__)
router = APIRouter(prefix="/app", tags=["settings page"])

PAGE_DIR = Path(__file__).resolve().parent.parent / "settings_page"
STATIC_DIR = PAGE_DIR / "static"
COOKIE = "castbridge_settings"
COOKIE_HEADER = "x-castbridge-cookie-session"
MAX_BODY = 32_768
# One answer for every payload that fails to decrypt or check: nothing to tell a prober apart.
BAD_PAYLOAD = (
    "castbridge could not verify your HighLevel user details. Reopen this page from the "
    "castbridge menu inside HighLevel."
)
NO_SSO = (
    "SSO not configured: the app's Shared Secret was never given to castbridge (GHL_SSO_KEY). "
    "Generate it in the Marketplace app (Advanced Settings → Auth → Shared Secret)."
)
# The page itself loads only its own assets; framing is set by EdgeMiddleware.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True, slots=True)
class Asset:
    name: str
    digest: str
    body: bytes
    media_type: str

    @property
    def url(self) -> str:
        stem, _, ext = self.name.rpartition(".")
        return f"/app/static/{stem}.{self.digest}.{ext}"


@lru_cache(maxsize=1)
def assets() -> dict[str, Asset]:
    """Each static file under its content-hashed name (cached forever by browsers)."""
    found: dict[str, Asset] = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if not path.is_file():
            continue
        body = path.read_bytes()
        media = "text/javascript" if path.suffix == ".js" else "text/css"
        asset = Asset(path.name, hashlib.sha256(body).hexdigest()[:12], body, media)
        found[asset.url.rsplit("/", 1)[1]] = asset
    return found


def asset_url(name: str) -> str:
    for asset in assets().values():
        if asset.name == name:
            return asset.url
    raise KeyError(name)


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PAGE_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["asset_url"] = asset_url
    return env


def render(name: str, **values: Any) -> str:
    return templates().get_template(name).render(**values)


async def sealer_of(request: Request) -> Sealer:
    """The session sealer, its key from the keyring (one per database, every process agrees)."""
    resources = resources_of(request)
    sealer = resources.extras.get("settings_sealer")
    if not isinstance(sealer, Sealer):
        async with resources.store.write() as db:
            key = await keyring.named_key(db, resources.box, SESSION_KEY_NAME)
        sealer = Sealer(key)
        resources.extras["settings_sealer"] = sealer
    return sealer


# Test messages cost the sub-account's credits: a few a minute is plenty for a person.
TEST_SMS_PER_MINUTE = 6


async def _limit(request: Request, key: str, per_minute: int | None = None) -> None:
    per_minute = per_minute or resources_of(request).settings.settings_rate_limit_per_minute
    limit = Limit(per_minute / 60.0, max(1.0, per_minute / 2.0))
    try:
        await resources_of(request).pacer.take(f"settings:{key}", limit)
    except Throttled as exc:
        raise HTTPException(
            429,
            "too many requests from this page; wait a moment",
            headers={"Retry-After": str(max(1, int(exc.wait + 0.999)))},
        ) from None


def _token(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.headers.get(COOKIE_HEADER) == "1":
        return request.cookies.get(COOKIE)
    return None


async def current_session(request: Request) -> Session:
    """The caller's session, checked on every API call; 401 (the page re-runs the handshake)."""
    sealer = await sealer_of(request)
    token = _token(request)
    try:
        session = sealer.open_session(token or "")
    except SessionError:
        raise HTTPException(
            401,
            "your castbridge session ended; reopen the page",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None
    await _limit(request, f"s:{session.subject}")
    return session


def _refused(exc: service.Refused) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def _session_answer(
    request: Request, sealer: Sealer, session: Session, view: dict[str, Any]
) -> JSONResponse:
    token = sealer.seal_session(session)
    ttl = max(1, int(session.expires_at - sealer.now()))
    response = JSONResponse(
        {"token": token, "expiresIn": ttl, "session": view},
        headers={"Cache-Control": "no-store"},
    )
    response.set_cookie(
        COOKIE, token, max_age=ttl, path="/app", secure=True, httponly=True, samesite="none"
    )
    return response


@router.get("/settings", response_class=HTMLResponse, include_in_schema=False)
async def settings_page(request: Request) -> HTMLResponse:
    """The Custom Page URL: a shell with no tenant data until the handshake succeeds."""
    html = render(
        "settings.html", sso_configured=resources_of(request).settings.ghl_sso_key is not None
    )
    return HTMLResponse(
        html, headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_CSP}
    )


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    asset = assets().get(name)
    if asset is None:
        raise HTTPException(404, "no such asset")
    return Response(
        asset.body,
        media_type=asset.media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


@router.post("/session")
async def create_session(request: Request) -> Response:
    """Exchange HighLevel's encrypted user context (`encryptedData` or `key`) for a session."""
    resources = resources_of(request)
    ip = request.client.host if request.client else "unknown"
    await _limit(request, f"ip:{ip}")
    secret = resources.settings.ghl_sso_key
    if secret is None:
        return JSONResponse({"error": NO_SSO}, status_code=501)
    try:
        body = parse_json_object(await read_limited(request, MAX_BODY))
        payload = body.get("encryptedData", body.get("key"))
        if not isinstance(payload, str):
            raise SSOError("no payload")
        context = decrypt_user_context(payload, secret.get_secret_value())
    except (SSOError, HTTPException):
        log.info("settings_session_refused", reason="payload")
        return JSONResponse(
            {"error": BAD_PAYLOAD}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    sealer = await sealer_of(request)
    try:
        session, view = await service.grant(resources, sealer, context)
    except service.Refused as exc:
        log.info("settings_session_refused", reason="not_installed")
        return _refused(exc)
    log.info("settings_session_granted", location_id=session.location_id, role=view["role"])
    return _session_answer(request, sealer, session, view)


async def _form(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_limited(request, MAX_BODY))


@router.get("/api/view")
async def view(request: Request, session: Session = Depends(current_session)) -> JSONResponse:
    """The page's body, rendered on the server (location or agency view)."""
    resources = resources_of(request)
    if session.location_id is None:
        rows = await views.agency_page(resources, session)
        html = render("agency.html", rows=rows, session=session)
    else:
        page = await views.location_page(resources, session)
        html = render("location.html", page=page, session=session)
    return JSONResponse(
        {"html": html, "session": service.public_view(session)},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/api/config")
async def save_config(request: Request, session: Session = Depends(current_session)) -> Response:
    try:
        message = await service.configure(resources_of(request), session, await _form(request))
    except service.Refused as exc:
        return _refused(exc)
    return JSONResponse({"message": message})


@router.post("/api/resume")
async def resume(request: Request, session: Session = Depends(current_session)) -> Response:
    try:
        message = await service.resume(resources_of(request), session)
    except service.Refused as exc:
        return _refused(exc)
    return JSONResponse({"message": message})


@router.post("/api/test-sms")
async def send_test_sms(request: Request, session: Session = Depends(current_session)) -> Response:
    if not session.read_only:
        await _limit(request, f"test:{session.location_id}", TEST_SMS_PER_MINUTE)
    form = await _form(request)
    try:
        answer = await service.send_test(
            resources_of(request), await sealer_of(request), session, form.get("to", "")
        )
    except service.Refused as exc:
        return _refused(exc)
    return JSONResponse(answer)


@router.post("/api/test-sms/status")
async def follow_test_sms(
    request: Request, session: Session = Depends(current_session)
) -> Response:
    form = await _form(request)
    handle = form.get("handle")
    if not isinstance(handle, str):
        return JSONResponse({"error": "no test message to follow"}, status_code=422)
    try:
        answer = await service.test_status(
            resources_of(request), await sealer_of(request), session, handle
        )
    except service.Refused as exc:
        return _refused(exc)
    return JSONResponse(answer)


@router.post("/api/open")
async def open_location(request: Request, session: Session = Depends(current_session)) -> Response:
    """An agency admin opens one of the agency's sub-accounts: a session for that location."""
    form = await _form(request)
    location_id = form.get("location_id")
    if not isinstance(location_id, str) or not 0 < len(location_id) <= 64:
        return JSONResponse({"error": "choose a sub-account"}, status_code=422)
    sealer = await sealer_of(request)
    try:
        opened, view_ = await service.open_location(
            resources_of(request), sealer, session, location_id
        )
    except service.Refused as exc:
        return _refused(exc)
    return _session_answer(request, sealer, opened, view_)
