"""The parts of certbot's ``acme`` library that adapters/acme_transport.py overrides.

``Network`` subclasses ``acme.client.ClientNetwork`` and overrides private methods (the only way
to share one session and nonce pool, bound response sizes and keep problem documents' status).
pyproject pins the library to the minor version these tests ran against; when the pin moves,
these tests say at once, with the method's name, if a method we override changed shape, rather
than letting an issuance fail in the lab (or in a user's cluster) with a TypeError.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from acme import client, messages

from acmebridge.adapters.acme_transport import Network


def parameters(fn: Callable[..., Any]) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("_post_once", ["url", "obj", "content_type", "kwargs"], id="_post_once"),
        pytest.param("_send_request", ["method", "url", "args", "kwargs"], id="_send_request"),
        pytest.param("_check_response", ["response", "content_type"], id="_check_response"),
        pytest.param("_get_nonce", ["url", "new_nonce_url"], id="_get_nonce"),
        pytest.param("_add_nonce", ["response"], id="_add_nonce"),
        pytest.param("post", ["args", "kwargs"], id="post"),
    ],
)
def test_the_library_methods_we_override_keep_their_shape(name: str, expected: list[str]) -> None:
    library = getattr(client.ClientNetwork, name)
    assert parameters(library) == expected, f"acme.client.ClientNetwork.{name} changed"
    # And ours (where we override it) takes what the library passes.
    assert parameters(getattr(Network, name)) == expected


def test_the_library_attributes_we_use_are_there() -> None:
    init = parameters(client.ClientNetwork.__init__)
    assert {"key", "account", "alg", "user_agent"} <= set(init)
    assert client.ClientNetwork.REPLAY_NONCE_HEADER == "Replay-Nonce"
    assert isinstance(
        inspect.getattr_static(client.ClientNetwork, "_check_response"), staticmethod | classmethod
    )
    # Problem documents parse into messages.Error, which must stay an exception we can annotate.
    error = messages.Error.from_json({"type": "urn:ietf:params:acme:error:badNonce"})
    assert isinstance(error, Exception) and error.code == "badNonce"
