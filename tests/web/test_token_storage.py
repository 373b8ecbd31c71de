"""Tokens at rest: the SQLite file and its WAL never hold an OAuth token in plaintext."""

from __future__ import annotations

from pathlib import Path

from castbridge.sandbox.ghl import GHLSandboxConfig
from castbridge.sandbox.stack import Stack, run_stack
from tests.web.support import eventually, installations

AGENCY_LOCATIONS = ["sbxLocationAgency001", "sbxLocationAgency002"]


def _issued_tokens(stack: Stack) -> set[str]:
    """Every access and refresh token the HighLevel sandbox ever handed out."""
    ghl = stack.ghl
    return set(ghl.access_tokens) | set(ghl.refresh_tokens) | ghl.used_refresh_tokens


def _database_bytes(data_dir: Path) -> dict[str, bytes]:
    files = {path.name: path.read_bytes() for path in data_dir.glob("castbridge.db*")}
    assert "castbridge.db" in files
    return files


def _assert_no_plaintext(stack: Stack, data_dir: Path) -> None:
    tokens = _issued_tokens(stack)
    assert tokens, "the install issued no tokens"
    for name, content in _database_bytes(data_dir).items():
        for token in tokens:
            assert token.encode() not in content, f"a token is in plaintext in {name}"
        assert b"sbx-at-" not in content, name
        assert b"sbx-rt-" not in content, name
        secret = stack.settings.secret_keys
        assert secret is not None
        assert secret.get_secret_value().encode() not in content, name


async def test_location_install_leaves_no_plaintext_token_on_disk(tmp_path: Path) -> None:
    """After a location install, no token is readable in castbridge.db or castbridge.db-wal."""
    async with run_stack(tmp_path) as stack:
        await stack.install()
        assert any(info.has_access_token for info in await installations(stack))
        assert (tmp_path / "castbridge.db-wal").exists()
        _assert_no_plaintext(stack, tmp_path)
    _assert_no_plaintext(stack, tmp_path)  # and after shutdown checkpoints the WAL


async def test_agency_install_and_refresh_leave_no_plaintext_token_on_disk(
    tmp_path: Path,
) -> None:
    """Company, minted and refreshed tokens are all stored encrypted, never in plaintext."""
    # Tokens that live 1 s are stale at once: minting refreshes the Company token first.
    config = GHLSandboxConfig(location_ids=AGENCY_LOCATIONS, access_token_ttl=1.0)
    async with run_stack(tmp_path, ghl_config=config) as stack:
        await stack.install(agency=True)

        async def minted() -> bool:
            rows = await installations(stack)
            return sum(1 for row in rows if row.active) == 3

        assert await eventually(minted, within=20)
        assert stack.ghl.refresh_count(config.company_id) >= 1
        assert len(_issued_tokens(stack)) >= 6
        _assert_no_plaintext(stack, tmp_path)
    _assert_no_plaintext(stack, tmp_path)
