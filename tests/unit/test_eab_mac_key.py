"""The MAC key of an external account binding, as read from its Secret.

The ACME library decodes the key leniently, so a key mangled on its way into the Secret would be
sent as some other key; the CA's refusal would then not say why. These cases are what users paste.
"""

from __future__ import annotations

import base64

import pytest

from acmebridge.reconcile.accounts import eab_mac_key

KEY = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(KEY, KEY.decode(), id="an unpadded base64url key is used as it is"),
        pytest.param(KEY + b"=", KEY.decode(), id="padding is dropped"),
        pytest.param(
            b"  " + KEY + b"\n", KEY.decode(), id="a trailing newline from echo is dropped"
        ),
        pytest.param(b"ab+/cd==", "ab+/cd", id="the standard base64 alphabet is accepted too"),
    ],
)
def test_accepts_base64_keys(raw: bytes, expected: str) -> None:
    assert eab_mac_key(raw) == expected


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        pytest.param(
            b"not a key!", "other than letters, digits", id="spaces and punctuation are refused"
        ),
        pytest.param(
            b"abc=def", "other than letters, digits", id="padding in the middle is refused"
        ),
        pytest.param(b"abcde", "does not decode", id="a length no encoding produces is refused"),
        pytest.param("clé".encode(), "other than letters, digits", id="non-ASCII text is refused"),
    ],
)
def test_refuses_what_is_not_a_key_without_quoting_it(raw: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        eab_mac_key(raw)
    assert raw.decode(errors="replace") not in str(caught.value)
