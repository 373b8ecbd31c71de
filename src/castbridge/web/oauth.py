"""OAuth install: redirect to HighLevel's choose-location page, then the callback."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from castbridge.installs import InstallError, complete_install, start_install
from castbridge.web.deps import resources_of
from castbridge.web.security import ClientLimiter

router = APIRouter(tags=["oauth"])


async def limited(request: Request) -> None:
    """CASTBRIDGE_OAUTH_RATE_LIMIT_PER_MINUTE per client IP on both OAuth pages."""
    limiter: ClientLimiter | None = getattr(request.app.state, "oauth_limiter", None)
    if limiter is None:
        per_minute = resources_of(request).settings.oauth_rate_limit_per_minute
        limiter = request.app.state.oauth_limiter = ClientLimiter(per_minute)
    await limiter.check(request)


MAX_CODE_CHARS = 2048
MAX_STATE_CHARS = 512
MAX_ERROR_CHARS = 200

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>castbridge - {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;
line-height:1.5;color:#1f2937}}h1{{font-size:1.5rem}}.ok{{color:#047857}}.err{{color:#b91c1c}}
ol li{{margin:.3rem 0}}</style></head><body>{body}</body></html>"""


def _page(title: str, body: str, status: int) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=escape(title), body=body), status_code=status)


def _failed(reason: str, status: int = 400) -> HTMLResponse:
    return _page(
        "install failed",
        f'<h1 class="err">Install did not complete</h1><p>{escape(reason)}</p>'
        '<p><a href="/oauth/install">Start the install again</a>.</p>',
        status,
    )


@router.get(
    "/oauth/install",
    summary="Start installing castbridge: redirects to HighLevel's choose-location page",
    response_model=None,
    status_code=302,
    dependencies=[Depends(limited)],
    responses={
        302: {"description": "Redirect to HighLevel"},
        503: {"description": "castbridge is not configured for HighLevel yet"},
    },
)
async def install(request: Request) -> HTMLResponse | RedirectResponse:
    try:
        url = await start_install(resources_of(request))
    except InstallError as exc:
        return _page(
            "not ready",
            f'<h1 class="err">castbridge cannot be installed yet</h1><p>{escape(str(exc))}</p>',
            503,
        )
    return RedirectResponse(url, status_code=302)


@router.get(
    "/oauth/callback",
    summary="HighLevel's redirect after the user picked locations; exchanges the code",
    response_class=HTMLResponse,
    response_model=None,
    dependencies=[Depends(limited)],
    responses={
        400: {"description": "Bad, reused or expired state or code"},
        429: {"description": "Too many attempts from this address"},
        503: {"description": "HighLevel could not be reached; try again later"},
    },
)
async def callback(
    request: Request,
    # Lengths are checked below rather than by Query(max_length=...): this page is opened in
    # a browser, so a bad link must get the HTML error page, not a JSON 422.
    code: str | None = Query(None, description=f"at most {MAX_CODE_CHARS} characters"),
    state: str | None = Query(None, description=f"at most {MAX_STATE_CHARS} characters"),
    error: str | None = Query(None),
) -> HTMLResponse:
    if error:
        return _failed(f"HighLevel reported: {error[:MAX_ERROR_CHARS]}")
    if not code:
        return _failed("The link has no authorization code.")
    if len(code) > MAX_CODE_CHARS or len(state or "") > MAX_STATE_CHARS:
        return _failed("The link is malformed: a parameter is too long.")
    try:
        outcome = await complete_install(resources_of(request), code, state)
    except InstallError as exc:
        return _failed(str(exc), exc.status)
    where = "your sub-account"
    pending = ""
    if outcome.user_type == "Company":
        where = "your agency"
        if outcome.pending < 0:
            pending = (
                "<p>HighLevel did not list your sub-accounts just now; castbridge keeps trying "
                "and connects each one as soon as it can.</p>"
            )
        else:
            pending = (
                f"<p>{outcome.pending} sub-account(s) are being connected now (each retried "
                "until it is); messages sent meanwhile wait for their sub-account.</p>"
            )
    body = (
        f'<h1 class="ok">castbridge is installed</h1><p>castbridge is connected to {where}.</p>'
        f"{pending}"
        "<p>One step remains in each sub-account that should send SMS through castbridge:</p>"
        "<ol><li>Open <b>Settings → Phone Numbers → Advanced Settings</b>.</li>"
        "<li>Under <b>SMS Provider</b>, choose <b>castbridge</b> and press <b>Save</b>.</li>"
        "<li>Send a test SMS from Conversations: its status turns to delivered once the "
        "carrier confirms it.</li></ol><p>You can close this window.</p>"
    )
    return _page("installed", body, 200)
