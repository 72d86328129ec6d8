"""The app-level check of Host and Origin (activekd_core.web_access), without a server."""

from __future__ import annotations

import pytest

from activekd_core.web_access import LOCAL_HOSTS, host_allowed, hostname_of, origin_allowed, refusal

CONFIG_HOSTS = ["localhost", "127.0.0.1", "::1"]


@pytest.mark.parametrize("host, name", [
    ("127.0.0.1:8501", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:8501", "::1"),
    ("lab.example.org.", "lab.example.org"),
    (None, None), ("", None), ("a@127.0.0.1", None), ("127.0.0.1/x", None), ("127.0.0.1:99999", None),
    ("127.0.0.1:port", None), ("evil.test 127.0.0.1", None),
])
def test_hostname_of(host, name) -> None:
    assert hostname_of(host) == name


def test_only_configured_names_are_allowed() -> None:
    for host in ("127.0.0.1:8501", "localhost:1", "[::1]:8501", "localhost"):
        assert host_allowed(host, CONFIG_HOSTS), host
    for host in ("evil.test:8501", "127.0.0.1.evil.test", "localhost.evil.test:8501", "0.0.0.0:8501", None):
        assert not host_allowed(host, CONFIG_HOSTS), host


def test_an_empty_host_list_means_the_local_names_not_any_name() -> None:
    """Streamlit accepts any Host when server.allowedHosts is empty (config not read); we do not."""
    assert all(host_allowed(f"[{h}]:8501" if ":" in h else h, []) for h in LOCAL_HOSTS)
    assert not host_allowed("evil.test:8501", [])


def test_operator_names_and_wildcards() -> None:
    allowed = CONFIG_HOSTS + ["labeling.lab.example.org", "*.team.example.org"]
    assert host_allowed("labeling.lab.example.org", allowed)
    assert host_allowed("ws3.team.example.org:443", allowed)
    assert not host_allowed("team.example.org.evil.test", allowed)
    assert host_allowed("anything", ["*"])


def test_origin_must_be_this_servers_own_or_listed() -> None:
    host = "127.0.0.1:8501"
    assert origin_allowed(None, host, [])
    assert origin_allowed("http://127.0.0.1:8501", host, [])
    assert origin_allowed("https://127.0.0.1:8501/", host, [])
    # Streamlit's own list ignores ports: a page on another local port passes there, not here
    assert not origin_allowed("http://127.0.0.1:9999", host, [])
    assert not origin_allowed("http://localhost:8501", host, [])
    assert not origin_allowed("http://evil.test:8501", host, [])
    assert not origin_allowed("null", host, [])
    assert origin_allowed("https://lab.example.org", host, ["https://lab.example.org/"])


def test_refusal_of_whole_requests() -> None:
    ok = {"Host": "127.0.0.1:8501", "Origin": "http://127.0.0.1:8501", "Upgrade": "websocket"}
    assert refusal(ok, CONFIG_HOSTS, []) is None
    assert refusal({}, CONFIG_HOSTS, []) is None  # AppTest: no HTTP request at all
    rebinding = {"host": "evil.test:8501", "origin": "http://evil.test:8501"}
    assert "host name" in refusal(rebinding, CONFIG_HOSTS, [])
    assert "host name" in refusal(rebinding, [], [])
    foreign = {"host": "127.0.0.1:8501", "origin": "http://evil.test:9000"}
    assert "another site" in refusal(foreign, CONFIG_HOSTS, [])
    no_host = {"Upgrade": "websocket", "Origin": "http://127.0.0.1:8501"}
    assert refusal(no_host, CONFIG_HOSTS, []) is not None
