"""Which browser connections the app answers: its own host names and origins only.

Streamlit itself refuses a WebSocket whose ``Host`` is not in ``server.allowedHosts``
and (with ``server.enableCORS = true``) one whose ``Origin`` hostname is not a local
name or in ``server.corsAllowedOrigins``. Two gaps remain, and :func:`refusal` closes
them at the top of every script run (``app.py`` calls it before anything else):

* When ``.streamlit/config.toml`` is not read (``streamlit run /path/app.py`` from
  another working folder) ``server.allowedHosts`` is empty and Streamlit accepts any
  ``Host``: a DNS-rebinding page (its own name resolved to 127.0.0.1) is then
  "same-origin". Here an empty list means the local names.
* Streamlit's origin list ignores ports, so a page on any other local port (another
  local web server) counts as this app. Here an origin is allowed only when it is
  exactly this server's own (``scheme://Host``) or listed in ``server.corsAllowedOrigins``.

Pure functions over header values: no Streamlit import, tested directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

LOCAL_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


def hostname_of(host: str | None) -> str | None:
    """The lower-case host name of a ``Host`` header (``name``, ``name:port``, ``[::1]:port``).

    Returns:
        The name without port or trailing dot, or None when the header is missing or is
        not a plain host (user info, path, query, bad port).
    """
    if host is None or not host.strip() or any(c in host for c in "/?#@\\ \t\r\n"):
        return None
    try:
        parts = urlsplit(f"//{host.strip()}")
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return None
    name = parts.hostname
    if not name:
        return None
    return name.lower().rstrip(".")


def host_allowed(host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a ``Host`` header names this server.

    Args:
        host: The request's ``Host`` header (port ignored).
        allowed: Host names as in Streamlit's ``server.allowedHosts``: exact names,
            ``*.example.org`` for subdomains, ``*`` for any. Empty means :data:`LOCAL_HOSTS`.
    """
    name = hostname_of(host)
    if name is None:
        return False
    patterns = [p.strip().lower().rstrip(".") for p in allowed if p and p.strip()]
    if not patterns:
        patterns = list(LOCAL_HOSTS)
    for pattern in patterns:
        if pattern.startswith("[") and pattern.endswith("]"):
            pattern = pattern[1:-1]
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str | None, host: str | None, allowed_origins: Iterable[str]) -> bool:
    """Whether a page at ``origin`` may use this server.

    Allowed: no ``Origin`` (not a web page: a program on this machine), this server's own
    origin (``http://`` or ``https://`` plus the ``Host`` header exactly, port included),
    or an origin listed in ``allowed_origins`` (exact match, e.g. ``https://lab.example.org``).
    """
    if origin is None:
        return True
    wanted = _normal_origin(origin)
    if host and wanted in (f"http://{host.strip().lower()}", f"https://{host.strip().lower()}"):
        return True
    return wanted in {_normal_origin(o) for o in allowed_origins if o and o.strip()}


def refusal(headers: Mapping[str, str], allowed_hosts: Iterable[str], allowed_origins: Iterable[str]) -> str | None:
    """Why a connection with these request headers gets no app content, or None to serve it.

    Args:
        headers: The headers of the browser's connection (the WebSocket's upgrade request).
            Empty when the script does not run behind HTTP at all (Streamlit's AppTest):
            served.
        allowed_hosts: ``server.allowedHosts`` (empty = the local names).
        allowed_origins: ``server.corsAllowedOrigins``.
    """
    if not headers:
        return None
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    host = lower.get("host")
    if not host_allowed(host, allowed_hosts):
        return "this server does not answer to the host name in the address bar"
    if not origin_allowed(lower.get("origin"), host, allowed_origins):
        return "the request came from a page on another site"
    return None
