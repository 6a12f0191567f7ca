"""Which ACME servers namespaced Issuers may use: the operator's allow-list. Pure.

Namespaced Issuers are written by application teams; the platform team decides which CAs they
may point the operator at (``--allowed-acme-server``). The check compares parsed URLs, never
text, and refuses URLs that parsers disagree about.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# User info, backslashes, whitespace and control characters: URL parsers disagree on where the
# host of such a URL is (see server_allowed).
_AMBIGUOUS_URL = re.compile(r"[@\\\s\x00-\x1f\x7f]")


def _url_parts(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) with the scheme's default port; ValueError when unparsable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower().rstrip("."), port, parts.path or "/"


def server_allowed(server: str, allowed: tuple[str, ...]) -> bool:
    """Pure: is ``server`` permitted by the allow-list of URL prefixes or bare host names?

    A URL entry is compared with the parsed server URL, never as text: scheme, host and port
    must be equal, and the path must continue the entry's path at a '/'. As text,
    ``https://ca.example`` would be a prefix of ``https://ca.example.evil.net/`` and of
    ``https://ca.example@evil.net/``. A host entry allows that host on any port. A server URL
    with user info, a backslash or whitespace is never allowed: Python's ``urlsplit`` finds the
    host of ``https://evil.net\\@ca.example/`` to be ca.example while urllib3, which sends the
    requests, connects to evil.net. An empty list allows every server.
    """
    if not allowed:
        return True
    if _AMBIGUOUS_URL.search(server):
        return False
    try:
        scheme, host, port, path = _url_parts(server)
    except ValueError:
        return False
    if not host:
        return False
    for entry in (e.strip() for e in allowed):
        if not entry:
            continue
        if "://" not in entry:
            if host == entry.lower().rstrip("."):
                return True
            continue
        try:
            want_scheme, want_host, want_port, want_path = _url_parts(entry)
        except ValueError:
            continue
        if (scheme, host, port) != (want_scheme, want_host, want_port):
            continue
        if want_path.endswith("/"):
            if path.startswith(want_path):
                return True
        elif path == want_path or path.startswith(want_path + "/"):
            return True
    return False
