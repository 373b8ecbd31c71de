# castbridge: multi-stage image. The install, start and health commands are those of
# .ci/image-commands.sh, which CI runs outside Docker; keep every change in that script.
# Not built on the machine this was written on (no docker daemon there): see README.

# --- build: uv installs castbridge and its locked dependencies into /app/.venv -------------
FROM python:3.12-slim-bookworm AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never CASTBRIDGE_VENV=/app/.venv
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
COPY .ci/image-commands.sh /app/image-commands.sh
RUN --mount=type=cache,target=/root/.cache/uv sh /app/image-commands.sh install

# --- runtime: the virtual environment and the script, nothing else -------------------------
FROM python:3.12-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 castbridge \
    && useradd --system --uid 10001 --gid castbridge --home-dir /app --shell /usr/sbin/nologin castbridge
COPY --from=build --chown=castbridge:castbridge /app /app
# Configuration comes only from the environment (never a baked-in .env); logs are JSON on
# stdout; the web port listens on every interface of the container.
ENV CASTBRIDGE_VENV=/app/.venv \
    PATH=/app/.venv/bin:$PATH \
    CASTBRIDGE_ENV_FILE=/dev/null \
    CASTBRIDGE_LOG_FORMAT=json \
    CASTBRIDGE_HOST=0.0.0.0 \
    CASTBRIDGE_PORT=8080 \
    CASTBRIDGE_DATA_DIR=/app/data \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER castbridge
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sh", "/app/image-commands.sh", "healthcheck"]
ENTRYPOINT ["sh", "/app/image-commands.sh"]
CMD ["web"]
