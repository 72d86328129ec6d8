"""The running app against a foreign web page, DNS rebinding, hostile names and outside hosts.

A real ``streamlit run app.py`` serves a project whose class names, file names and
annotator name are Markdown/HTML attacks. It is attacked

* from Chromium: a page on a second origin (``evil.test``, mapped to 127.0.0.1 with
  ``--host-resolver-rules``) opens ``/_stcore/stream`` and reads a response; the app is
  loaded under the attacker's name (DNS rebinding); every request to a host other than
  127.0.0.1/localhost is aborted and counted while each page loads;
* from a raw WebSocket client (the ``websockets`` package, a Streamlit dependency) with
  forged ``Origin`` and ``Host`` headers, reading what the app sends back;
* with the project's ``.streamlit/config.toml`` not read at all (server started from
  another folder), where only the app's own check stands.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from browser_support import ARGS, CHROMIUM, ROOT, Server, free_port

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
websockets_client = pytest.importorskip("websockets.sync.client", reason="the websockets package is not installed")

EVIL = "evil.test"
CLASSES = ["[support desk](http://evil.test/phish)", "![i](http://evil.test/class.png)", "<b>bold</b>`tick",
           ":blue[big] :smile: $x^2$ ~~gone~~ www.evil.test"]
FILES = ["a`b.png", "![f](http__evil.test_file.png).png", "[desk](http___evil.test).png", "plain_1.png",
         "plain_2.png", "plain_3.png"]
ANNOTATOR = "![a](http://evil.test/annotator.png) [support desk](http://evil.test/desk)"
PAGES = ["", "train", "explore", "teacher_bias", "project"]


def _make_project(base: Path) -> Path:
    from PIL import Image

    from activekd_core.project import Project

    root = base / "images"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in FILES:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / name)
    project = Project.create(base / "hostile", root, [(c, "a photo") for c in CLASSES], {"kind": "standin"},
                             batch_size=4, name="[proj](http://evil.test/p)")
    project.ensure_batch()
    folder = project.folder
    project.close()
    return folder


@pytest.fixture(scope="module")
def project_folder(tmp_path_factory) -> Path:
    return _make_project(tmp_path_factory.mktemp("hostile"))


def _serve(tmp: Path, folder: Path, cwd: Path = ROOT) -> Server:
    server = Server(tmp, tmp / "streamlit.log", env={"ACTIVEKD_PROJECT": str(folder), "ACTIVEKD_ANNOTATOR": ANNOTATOR},
                    cwd=cwd)
    server.start(timeout=180)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory, project_folder):
    srv = _serve(tmp_path_factory.mktemp("srv"), project_folder)
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def unconfigured_server(tmp_path_factory, project_folder):
    """The app started from a folder without .streamlit/config.toml: Streamlit's defaults."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    srv = _serve(elsewhere, project_folder, cwd=elsewhere)
    yield srv
    srv.kill()


# ---- a raw WebSocket client ----------------------------------------------------------------------


def _app_session(port: int, host: str, origin: str | None, timeout: float = 150.0) -> bytes | None:
    """Open /_stcore/stream with these headers, ask for one script run, return everything sent back.

    Returns None when the server refuses the WebSocket handshake.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.exceptions import InvalidStatus

    sock = socket.create_connection(("127.0.0.1", port), timeout=60)  # whatever name the Host header says
    try:
        ws = websockets_client.connect(f"ws://{host}/_stcore/stream", sock=sock, origin=origin,
                                       subprotocols=["streamlit"], open_timeout=60, max_size=None)
    except InvalidStatus as exc:
        assert exc.response.status_code in (403, 400), exc
        return None
    received = b""
    with ws:
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = ""
        ws.send(msg.SerializeToString())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = ws.recv(timeout=deadline - time.monotonic())
            if isinstance(data, str):
                continue
            received += data
            fwd = ForwardMsg()
            fwd.ParseFromString(data)
            if fwd.WhichOneof("type") == "script_finished":
                return received
    raise AssertionError("the script run did not finish")


def test_raw_websocket_own_origin_is_served(server) -> None:
    """The control: the same client with this server's own Host and Origin gets the Label page."""
    got = _app_session(server.port, f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}")
    assert got is not None and b"Labeled per class" in got


def test_raw_websocket_from_a_foreign_origin_is_refused(server) -> None:
    assert _app_session(server.port, f"127.0.0.1:{server.port}", f"http://{EVIL}:9999") is None


def test_raw_websocket_dns_rebinding_is_refused(server) -> None:
    """Host and Origin are both the attacker's name (resolved to 127.0.0.1): same-origin for the browser."""
    got = _app_session(server.port, f"{EVIL}:{server.port}", f"http://{EVIL}:{server.port}")
    assert got is None


def test_raw_websocket_from_another_local_port_gets_no_app_content(server) -> None:
    """Streamlit admits any port of 127.0.0.1 as an origin; the app serves only its own origin."""
    got = _app_session(server.port, f"127.0.0.1:{server.port}", "http://127.0.0.1:9")
    assert got is None or (b"Refused" in got and b"Labeled per class" not in got and CLASSES[0].encode() not in got)


def test_unconfigured_server_still_refuses_rebinding_and_foreign_origins(unconfigured_server) -> None:
    port = unconfigured_server.port
    own = _app_session(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}")
    assert own is not None and b"Labeled per class" in own
    for host, origin in ((f"{EVIL}:{port}", f"http://{EVIL}:{port}"), (f"127.0.0.1:{port}", f"http://{EVIL}:1"),
                         (f"localhost:{port}", "http://localhost:9")):
        got = _app_session(port, host, origin)
        assert got is None or (b"Refused" in got and b"Labeled per class" not in got), (host, origin)


def test_no_cors_wildcard(server) -> None:
    import urllib.request

    for path in ("/_stcore/health", "/_stcore/host-config"):
        req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers={"Origin": f"http://{EVIL}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            allow = resp.headers.get("Access-Control-Allow-Origin")
        assert allow is None, (path, allow)


# ---- Chromium ---------------------------------------------------------------------------------------

ATTACK_HTML = """<!doctype html><title>attack</title><script>
window.result = {};
const app = new URLSearchParams(location.search).get('app');
function probe(name, url) {
  return new Promise(done => {
    const ws = new WebSocket(url, ['streamlit']);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => { window.result[name] = 'open'; ws.close(); done(); };
    ws.onerror = () => { if (!window.result[name]) window.result[name] = 'refused'; };
    ws.onclose = () => { if (!window.result[name]) window.result[name] = 'refused'; done(); };
  });
}
Promise.all([
  probe('ws_ip', 'ws://127.0.0.1:' + app + '/_stcore/stream'),
  probe('ws_localhost', 'ws://localhost:' + app + '/_stcore/stream'),
  fetch('http://127.0.0.1:' + app + '/_stcore/host-config').then(r => r.text())
    .then(t => { window.result.read = t.slice(0, 80); }, e => { window.result.read = 'blocked'; }),
]).then(() => { window.done = true; });
</script>"""


@pytest.fixture(scope="module")
def attacker_site():
    """A tiny web server for the attacker's page, on its own port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = ATTACK_HTML.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS + [f"--host-resolver-rules=MAP {EVIL} 127.0.0.1"])
        yield b
        b.close()


def test_chromium_page_on_another_origin_cannot_open_the_socket_or_read(server, attacker_site, browser) -> None:
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"http://{EVIL}:{attacker_site}/attack.html?app={server.port}")
    page.wait_for_function("window.done === true", timeout=90_000)
    result = page.evaluate("window.result")
    page.close()
    assert result == {"ws_ip": "refused", "ws_localhost": "refused", "read": "blocked"}, result


def test_chromium_dns_rebinding_gets_no_app_content(server, browser) -> None:
    """The app opened as http://evil.test:PORT (the attacker's name resolving to 127.0.0.1)."""
    page = browser.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"http://{EVIL}:{server.port}/")
    probe = """() => new Promise(done => {
      const ws = new WebSocket('ws://' + location.host + '/_stcore/stream', ['streamlit']);
      ws.onopen = () => { ws.close(); done('open'); };
      ws.onclose = () => done('refused');
    })"""
    outcome = page.evaluate(probe)
    text = page.locator("body").inner_text()
    page.close()
    assert outcome == "refused"
    assert "Labeled per class" not in text and "support desk" not in text


def _count_outside_requests(page) -> list[str]:
    outside: list[str] = []

    def route(r):
        from urllib.parse import urlsplit

        url = r.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            outside.append(url)
            r.abort()

    page.route("**/*", route)
    return outside


def _settled(page) -> None:
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0", timeout=60_000)


def test_every_page_loads_without_a_request_to_another_host(server, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(90_000)
    outside = _count_outside_requests(page)
    for path in PAGES:
        page.goto(f"http://127.0.0.1:{server.port}/{path}")
        page.locator("h1").first.wait_for(timeout=120_000)
        page.locator("[data-testid='stSidebarNav']").wait_for()
        _settled(page)
        page.wait_for_timeout(1500)  # late requests (favicon, fonts) have time to start
    page.close()
    assert outside == [], outside


def test_hostile_names_render_literally_in_the_browser(server, browser, project_folder) -> None:
    """Class, file, project and annotator names that are Markdown/HTML attacks show as text."""
    from activekd_core.store import Store

    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.set_default_timeout(90_000)
    outside = _count_outside_requests(page)
    page.goto(f"http://127.0.0.1:{server.port}/")
    with Store.open(project_folder / "project.db") as s:
        batch = s.open_batch_current()
    key = f"lbl_batch-{batch.id}"
    button = page.locator(f".st-key-{key}_0_card .akd-classes button[data-k='0']:visible")
    button.wait_for(timeout=120_000)
    button.click()  # label the first image as CLASSES[0] by ANNOTATOR
    page.locator(".st-key-lbl_card_0").get_by_text("by ![a]", exact=False).wait_for()
    _settled(page)
    # md() puts invisible word joiners (U+2060) into URLs so that GFM does not link them
    card = page.locator(".st-key-lbl_card_0").inner_text().replace("\u2060", "")
    sidebar = page.locator("[data-testid='stSidebar']").inner_text().replace("\u2060", "")
    links = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
    images = page.evaluate("[...document.querySelectorAll('img')].map(i => i.src)")
    bolds = page.evaluate("[...document.querySelectorAll('main b, main del, main .katex')].map(b => b.innerText)")
    body = page.locator("main").inner_text().replace("\u2060", "")
    page.close()
    assert not [h for h in links if EVIL in h], links
    assert not [s for s in images if EVIL in s], images
    assert bolds == []
    assert f"labeled {CLASSES[0]} by {ANNOTATOR}" in card
    for name in CLASSES:
        assert name in body, name
    assert batch.items[0].image_id in card
    assert "[proj](http://evil.test/p)" in sidebar and ANNOTATOR in sidebar
    assert outside == [], outside
