"""External account binding MAC keys as CAs hand them out. Pure."""

from __future__ import annotations

import base64
import binascii
import re


def eab_mac_key(raw: bytes) -> str:
    """Pure: the MAC key from an EAB Secret, checked to be base64 text as CAs issue it.

    Raises ValueError saying what is wrong (never quoting the key). The ACME library decodes the
    key leniently, skipping characters it does not know (or failing with an error no condition
    shows), so a mangled key would be sent as some other key, and the CA's refusal would not
    point here. Both alphabets are accepted: base64url, as RFC 8555 CAs issue keys, and the
    standard one, which the library decodes as well.
    """
    text = raw.decode("ascii", "replace").strip()
    if not re.fullmatch(r"[A-Za-z0-9_+/-]+={0,2}", text):
        raise ValueError(
            "it holds characters other than letters, digits, '-' and '_'; "
            "paste the key exactly as the CA issued it"
        )
    unpadded = text.rstrip("=")
    try:
        base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"it does not decode: {e}") from e
    return unpadded
