"""Small helpers shared by the page tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``streamlit run app.py`` in its own process group (so SIGKILL takes all of it)."""

    def __init__(self, home: Path, log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT,
                 extra_args: tuple[str, ...] = (), port: int = 0) -> None:
        self.home = home
        self.log = log
        self.extra_env = dict(env or {})
        self.cwd = cwd  # Streamlit reads .streamlit/config.toml from here
        self.extra_args = tuple(extra_args)  # more `streamlit run` options
        self.fixed_port = port  # 0: any free port
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> str:
        self.port = self.fixed_port or free_port()
        env = dict(os.environ, ACTIVEKD_HOME=str(self.home), ACTIVEKD_DEMO_PER_CLASS="4", HF_HUB_OFFLINE="1",
                   PYTHONPATH=str(ROOT))
        env.pop("ACTIVEKD_PROJECT", None)
        env.pop("ACTIVEKD_TRAIN_IN_THREAD", None)
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
               "--server.port", str(self.port), "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", *self.extra_args]
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return url
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"streamlit did not answer on {url} within {timeout}s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server's whole process group (as a crash would)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextmanager
def served_browser(server: Server, viewport: tuple[int, int] = (1500, 1300)) -> Iterator[tuple[str, Any, Any]]:
    """Start ``server``, launch headless Chromium with one page of ``viewport`` size.

    Yields ``(url, browser, page)``; the browser is closed and the server's process group
    killed on the way out, also when the test fails.
    """
    from playwright import sync_api

    url = server.start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                yield url, browser, browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            finally:
                browser.close()
    finally:
        server.kill()
