"""Chromium: a reload keeps the project and the annotator; Streamlit's login against a real OIDC provider.

The OpenID Connect provider is ``oidc-provider-mock`` started by the test on localhost; the
app runs with an ``[auth]`` secrets file that points at it. A refused login leaves the
browser on the sign-in screen with no app content.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_support import ARGS, CHROMIUM, Server, free_port, served_browser  # noqa: E402
from test_browser import _settled, _wait, home, playwright_api  # noqa: E402,F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: install Debian's chromium package"),
]


def _events(home: Path) -> list[tuple[str, str]]:
    from activekd_core.store import Store

    with Store.open(home / "projects" / "textile" / "project.db") as s:
        return [(e.event, e.annotator) for e in s.events()]


def _first_label_button(page, pos: int = 0):
    return page.locator(f"[class*='st-key-lbl_batch-'][class*='_{pos}_card'] .akd-classes button[data-k='0']:visible").first


def test_reload_keeps_project_and_annotator_in_chromium(home: Path, tmp_path: Path) -> None:
    server = Server(home, tmp_path / "streamlit.log")
    with served_browser(server, (1400, 1200)) as (url, browser, page):
        page.set_default_timeout(60_000)
        page.goto(url + "/project")
        box = page.locator(".st-key-prj_annotator_input input")
        box.wait_for(state="visible", timeout=90_000)
        box.fill("dr. ada")
        box.press("Enter")
        page.wait_for_function("new URLSearchParams(location.search).get('annotator') === 'dr. ada'", timeout=30_000)
        page.goto(page.url.replace("/project", "/"))  # what a bookmark of the URL does
        _first_label_button(page).wait_for(state="visible", timeout=90_000)
        _settled(page)
        _first_label_button(page).click()
        _wait(lambda: len(_events(home)) == 1, 30, "the first label")
        page.reload()
        _first_label_button(page, 1).wait_for(state="visible", timeout=90_000)
        _settled(page)
        _first_label_button(page, 1).click()
        _wait(lambda: len(_events(home)) == 2, 30, "the label after the reload")
        assert _events(home) == [("label", "dr. ada"), ("label", "dr. ada")]
        assert "demo=textile" in page.url


def test_oidc_login_and_refused_login_in_chromium(home: Path, tmp_path: Path) -> None:
    oidc_mock = pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock is not installed")
    pytest.importorskip("authlib", reason="Authlib (needed by st.login) is not installed")
    port = free_port()
    with oidc_mock.run_server_in_thread() as oidc:
        issuer = f"http://localhost:{oidc.server_port}"
        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            f'redirect_uri = "http://localhost:{port}/oauth2callback"\n'
            f'cookie_secret = "{secrets.token_hex(16)}"\n'
            'client_id = "activekd-test"\n'
            'client_secret = "not-a-secret"\n'
            f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
        )
        server = Server(home, tmp_path / "streamlit.log", extra_args=("--secrets.files", str(secrets_file)), port=port)
        server.start()
        app = f"http://localhost:{port}/"
        try:
            with playwright_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                # --- refused at the provider: back on the sign-in screen, no app content
                refused = browser.new_context().new_page()
                refused.set_default_timeout(60_000)
                refused.goto(app)
                refused.get_by_role("button", name="Sign in").wait_for(timeout=90_000)
                refused.get_by_role("button", name="Sign in").click()
                refused.get_by_role("button", name="Deny").wait_for()
                refused.get_by_role("button", name="Deny").click()
                refused.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
                _settled(refused)
                assert refused.locator("[class*='st-key-lbl_']").count() == 0
                assert "Signed in as" not in refused.content()
                # --- signed in: the provider's user is the annotator
                page = browser.new_context().new_page()
                page.set_default_timeout(60_000)
                page.goto(app)
                page.get_by_role("button", name="Sign in").wait_for(timeout=90_000)
                page.get_by_role("button", name="Sign in").click()
                page.locator("input[name=sub]").fill("ada@example.org")
                page.get_by_role("button", name="Authorize").click()
                page.get_by_text("Signed in as ada@example.org").wait_for(timeout=90_000)
                _first_label_button(page).wait_for(state="visible", timeout=90_000)
                _settled(page)
                _first_label_button(page).click()
                _wait(lambda: len(_events(home)) == 1, 30, "the signed-in user's label")
                assert _events(home) == [("label", "ada@example.org")]
                browser.close()
        finally:
            server.kill()
