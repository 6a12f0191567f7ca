"""Fetch issuer certificates from a chain's AIA ``caIssuers`` URLs (RFC 5280 §4.2.2.1).

Internal CAs often serve only leaf and intermediate; the URL in the intermediate points at the
root. What comes back is only a *candidate*: ``domain.chain.resolve_root`` accepts it only if its
signature over the chain verifies. Fetches are bounded in size and time, and a failure is not an
error: ``ca.crt`` is then just not proven from this source.
"""

from __future__ import annotations

import logging
import time

import requests
import urllib3
from cryptography import x509

from acmebridge.domain import chain as chains

log = logging.getLogger("acmebridge.aia")

MAX_AIA_BYTES = 64 * 1024
AIA_TIMEOUT_SECONDS = 5.0


def fetch_ca_issuers(url: str, *, timeout: float = AIA_TIMEOUT_SECONDS) -> list[x509.Certificate]:
    """The certificates at ``url``: at most ``MAX_AIA_BYTES``, within ``timeout`` seconds.

    The URL comes from a certificate the CA issued, so the server at the other end may be slow
    or hostile. A per-read timeout alone would let a server that sends one byte every few
    seconds hold a worker for hours, so the whole body must arrive by a deadline; a read already
    waiting when it passes ends within one more ``timeout``. No redirects are followed, and the
    body is asked for uncompressed and read as it comes, so that a small compressed answer
    cannot unpack into a large one.
    """
    deadline = time.monotonic() + timeout
    try:
        with requests.get(
            url,
            timeout=timeout,
            stream=True,
            allow_redirects=False,
            headers={"Accept-Encoding": "identity"},
        ) as resp:
            if resp.status_code != 200:
                log.info("AIA %s answered HTTP %d", url, resp.status_code)
                return []
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_AIA_BYTES:
                log.info("AIA %s is larger than %d bytes; ignored", url, MAX_AIA_BYTES)
                return []
            data = bytearray()
            while len(data) <= MAX_AIA_BYTES:
                chunk = resp.raw.read1(MAX_AIA_BYTES + 1 - len(data), decode_content=False)
                if not chunk:
                    break
                data += chunk
                if time.monotonic() > deadline:
                    log.info("AIA %s did not arrive within %.0fs; ignored", url, timeout)
                    return []
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
        log.info("AIA %s not fetched: %s", url, e)
        return []
    if len(data) > MAX_AIA_BYTES:
        log.info("AIA %s is larger than %d bytes; ignored", url, MAX_AIA_BYTES)
        return []
    try:
        return list(chains.parse_aia_response(bytes(data)))
    except ValueError as e:
        log.info("AIA %s is not a certificate: %s", url, e)
        return []
