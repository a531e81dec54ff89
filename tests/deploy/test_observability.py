"""The metrics plumbing on its own: a process's /metrics port (off by default, a taken one
refused naming the variable) and gauges read at the scrape (a source that fails leaves out
only its own series)."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tradeloop.errors import ConfigError
from tradeloop.observability import serve_metrics
from tradeloop.observability.sampled import Sampled
from tradeloop.settings import Settings


def test_no_port_serves_nothing_and_a_taken_port_is_refused_naming_the_variable(tmp_path) -> None:
    assert serve_metrics(Settings(TRADELOOP_DATA_DIR=str(tmp_path))) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"TRADELOOP_METRICS_PORT={port} .*free port"):
            serve_metrics(Settings(TRADELOOP_DATA_DIR=str(tmp_path), TRADELOOP_METRICS_PORT=str(port)))


def test_a_served_port_answers_with_the_process_metrics(tmp_path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    server = serve_metrics(Settings(TRADELOOP_DATA_DIR=str(tmp_path), TRADELOOP_METRICS_PORT=str(port)))
    assert server is not None
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert f'tradeloop_disk_free_bytes{{path="{tmp_path.resolve()}"}}' in text
        assert "process_resident_memory_bytes" in text
        assert "_created" not in text  # off: no rule or dashboard reads them
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_source_leaves_out_only_its_own_series() -> None:
    registry = CollectorRegistry()
    depth = Sampled("tradeloop_test_depth", "A test gauge", ("queue",), registry=registry)
    depth.track("ok", lambda: [(("a",), 3)])

    def broken():
        raise ConnectionError("redis went away")

    depth.track("broken", broken)
    text = generate_latest(registry).decode()
    assert 'tradeloop_test_depth{queue="a"} 3.0' in text
    owner = object()
    depth.track("ok", lambda: [(("b",), 1)], owner=owner)
    depth.forget("ok", owner=object())  # not its owner: stays
    assert 'tradeloop_test_depth{queue="b"} 1.0' in generate_latest(registry).decode()
    depth.forget("ok", owner=owner)
    assert 'queue="b"' not in generate_latest(registry).decode()
