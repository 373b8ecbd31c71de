"""The bare baseline: a FastAPI endpoint that reads the body and answers 200, under uvicorn.

Run as `python -m bench.bare PORT`. Same server stack and settings as `castbridge serve` (uvicorn
with whichever HTTP parser and event loop it picks, httptools and uvloop when installed, as they
are; no access log), so castbridge/bare is what castbridge's own work costs per request.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/webhooks/ghl/delivery")
async def delivery(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"ok": True, "bytes": len(body)})


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
