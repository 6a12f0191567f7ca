"""The allow-list of ACME servers for namespaced Issuers (``--allowed-acme-server``).

Whoever may create an Issuer chooses the URL the operator sends requests to, from inside the
cluster. The allow-list is what stops that being any address, so it must not be fooled by URLs
that look like an allowed one to a text comparison, or to one URL parser but not to another.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from urllib3.util import parse_url

from acmebridge.reconcile.accounts import server_allowed

CA = "https://ca.internal.example/acme/"


@pytest.mark.parametrize(
    ("server", "allowed", "expected"),
    [
        pytest.param("https://evil.example/dir", (), True, id="an empty list allows any server"),
        pytest.param(
            "https://ca.internal.example/acme/directory", (CA,), True, id="a URL under the prefix"
        ),
        pytest.param(
            "https://CA.Internal.Example:443/acme/directory",
            (CA,),
            True,
            id="host case and the default port do not matter",
        ),
        pytest.param(
            "https://ca.internal.example/acme-evil/directory",
            ("https://ca.internal.example/acme",),
            False,
            id="a prefix without a slash still ends at a path segment",
        ),
        pytest.param(
            "https://ca.internal.example/acme",
            ("https://ca.internal.example/acme",),
            True,
            id="the prefix itself is allowed",
        ),
        pytest.param(
            "https://ca.internal.example.evil.net/acme/directory",
            ("https://ca.internal.example",),
            False,
            id="a longer host that starts with the allowed one is refused",
        ),
        pytest.param(
            "https://ca.internal.example@evil.net/acme/directory",
            ("https://ca.internal.example",),
            False,
            id="the allowed host as a user name in front of another host is refused",
        ),
        pytest.param(
            "https://evil.net\\@ca.internal.example/acme/directory",
            ("ca.internal.example",),
            False,
            id="a backslash that parsers read two ways is refused",
        ),
        pytest.param(
            "https://ca.internal.example:8443/acme/directory",
            (CA,),
            False,
            id="another port on the allowed host is refused",
        ),
        pytest.param(
            "http://ca.internal.example/acme/directory",
            (CA,),
            False,
            id="another scheme is refused",
        ),
        pytest.param(
            "https://ca.internal.example:8443/dir",
            ("ca.internal.example",),
            True,
            id="a host entry allows any port and path",
        ),
        pytest.param(
            "https://ca.internal.example./dir",
            ("ca.internal.example",),
            True,
            id="a trailing dot is the same host",
        ),
        pytest.param(
            "https://internal.example/dir",
            ("ca.internal.example",),
            False,
            id="a parent domain of an allowed host is refused",
        ),
        pytest.param(
            "https://x.ca.internal.example/dir",
            ("ca.internal.example",),
            False,
            id="a subdomain of an allowed host is refused",
        ),
        pytest.param(
            "https://ca.internal.example:99999/dir",
            ("ca.internal.example",),
            False,
            id="a port out of range is refused",
        ),
        pytest.param(
            "https://127.0.0.1:14000/dir",
            ("https://127.0.0.1:9/", "https://127.0.0.1:14000/"),
            True,
            id="any entry of several may allow",
        ),
        pytest.param(
            "https://127.0.0.1:14000/dir\n",
            ("https://127.0.0.1:14000/",),
            False,
            id="a control character is refused",
        ),
        pytest.param(
            "https://[::1]:14000/dir",
            ("https://[::1]:14000/",),
            True,
            id="an IPv6 literal is compared as a host",
        ),
    ],
)
def test_server_allowed(server: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert server_allowed(server, allowed) is expected


# URLs assembled from pieces that have fooled allow-lists: user info, backslashes, look-alike
# hosts, ports and paths.
url_pieces = st.lists(
    st.sampled_from(
        [
            "ca.internal.example",
            "evil.net",
            ".evil.net",
            "@",
            "\\",
            ":",
            "443",
            "8443",
            "/",
            "acme",
            "acme-evil",
            "%40",
            "#",
            "?",
            ".",
        ]
    ),
    min_size=1,
    max_size=8,
).map(lambda parts: "https://" + "".join(parts))


@given(url_pieces, st.sampled_from([CA, "https://ca.internal.example", "ca.internal.example"]))
def test_an_allowed_url_connects_to_an_allowed_host(server: str, entry: str) -> None:
    """The check agrees with urllib3, which requests uses to connect: whatever passes the
    check is fetched from the allowed host (and for a URL entry, its port and path)."""
    if not server_allowed(server, (entry,)):
        return
    url = parse_url(server)
    # "ca.internal.example." is the same host written as an absolute name: resolvers look up
    # both the same way.
    assert (url.host or "").rstrip(".") == "ca.internal.example"
    if "://" in entry:
        assert url.port in (None, 443)
    if entry == CA:
        assert (url.path or "").startswith("/acme/")
