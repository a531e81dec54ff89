"""Exchange keys never reach a log (ccxt's DEBUG request lines and its verbose mode included),
and a keyed client never signs requests over plain text to another host; nor do the other
secrets of the settings (the backup repository's password)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from exchange_server import BinanceLoopback

from tradeloop.data.exchanges import make_exchange
from tradeloop.errors import ConfigError
from tradeloop.redaction import redact, register_secret
from tradeloop.settings import Settings, register_settings_secrets

KEY, SECRET = "k3y-3f9a1c27d0b84e6f", "s3cr3t-77c1e0a94b2d4f18a6"


@pytest.fixture
def server():
    with BinanceLoopback(candles={}, prices={"BTCUSDT": 20_000.0}, api_key=KEY, secret=SECRET) as srv:
        yield srv


def test_a_signed_order_logged_at_debug_and_verbose_shows_no_key_or_secret(
    server: BinanceLoopback, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    exchange = make_exchange(
        "binance",
        timeout_s=5,
        api_url=server.url,
        asynchronous=True,
        credentials={"apiKey": KEY, "secret": SECRET},
        allow_insecure_loopback=True,
    )
    exchange.verbose = True  # ccxt's own HTTP dump: request headers carry the key

    async def scenario():
        try:
            await exchange.load_markets()
            return await exchange.create_order(
                "BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "tl-secret-test"}
            )
        finally:
            await exchange.close()

    with caplog.at_level(logging.DEBUG):
        order = asyncio.run(scenario())
    assert order["status"] == "closed"  # the signed request really went through
    printed = capsys.readouterr()
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "POST" in logged and "/api/v3/order" in logged  # the request itself was logged ...
    for text in (logged, caplog.text, printed.out, printed.err):
        assert KEY not in text and SECRET not in text  # ... without the credentials
    assert "X-MBX-APIKEY" in logged and "***" in logged


def test_credential_shaped_values_are_masked_even_when_never_registered() -> None:
    register_secret("registered-value-123")
    text = redact(
        "url=/api?signature=abc123&x=1 headers {'X-MBX-APIKEY': 'unregistered'} "
        "password=hunter2 registered-value-123 ok"
    )
    assert "abc123" not in text and "unregistered" not in text and "hunter2" not in text
    assert "registered-value-123" not in text
    assert "x=1" in text and text.endswith(" ok")


@pytest.mark.parametrize("url", ["http://api.example.com", "http://10.0.0.8:8080"])
def test_signed_requests_over_plain_http_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="plain text.*https"):
        make_exchange("binance", api_url=url, credentials={"apiKey": KEY, "secret": SECRET})
    with pytest.raises(ConfigError, match="only loopback"):  # the loopback setting is no way around it
        make_exchange(
            "binance", api_url=url, credentials={"apiKey": KEY, "secret": SECRET}, allow_insecure_loopback=True
        )


def test_plain_http_to_loopback_needs_the_explicit_setting() -> None:
    with pytest.raises(ConfigError, match="TRADELOOP_ALLOW_INSECURE_LOOPBACK"):
        make_exchange("binance", api_url="http://127.0.0.1:9", credentials={"apiKey": KEY, "secret": SECRET})
    client = make_exchange(
        "binance",
        api_url="http://127.0.0.1:9",
        credentials={"apiKey": KEY, "secret": SECRET},
        allow_insecure_loopback=True,
    )
    assert client.apiKey == KEY
    make_exchange("binance", api_url="http://127.0.0.1:9")  # unsigned market data may use http


def test_live_mode_with_keys_over_plain_http_exits_2(tmp_path) -> None:
    import os
    import subprocess
    import sys

    env = os.environ | {
        "TRADELOOP_DATA_DIR": str(tmp_path),
        "TRADELOOP_EXCHANGE_API_KEY": KEY,
        "TRADELOOP_EXCHANGE_SECRET": SECRET,
        "TRADELOOP_EXCHANGE_API_URL": "http://api.example.com",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tradeloop",
            "live",
            "run",
            "--name",
            "x",
            "--mode",
            "live",
            "--exchange",
            "binance",
            "--symbol",
            "BTC-USDT",
            "--timeframe",
            "1m",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "plain text" in done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr and SECRET not in done.stdout + done.stderr


def test_the_backup_password_and_a_repository_urls_password_never_reach_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    password, in_url = "bkp-6f1e0c9a2d47", "r3po-41c7e09b"
    repository = f"rest:https://ops:{in_url}@backup.example/tradeloop"
    line = f"restic key {password} for {repository}"  # no credential-shaped name before either
    assert password in redact(line) and in_url in redact(line)  # unknown values are not masked ...
    register_settings_secrets(Settings(TRADELOOP_BACKUP_PASSWORD=password, TRADELOOP_BACKUP_REPOSITORY=repository))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("tradeloop.backup.test").debug("restic key %s for %s", password, repository)
    assert caplog.records and password not in caplog.text and in_url not in caplog.text  # ... the settings' are
    assert "rest:https://ops:***@backup.example/tradeloop" in caplog.text
