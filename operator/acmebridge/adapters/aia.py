"""Fetch issuer certificates from a chain's AIA ``caIssuers`` URLs (RFC 5280 §4.2.2.1).

Internal CAs often serve only leaf and intermediate; the URL in the intermediate points at the
root. What comes back is only a *candidate*: ``domain.chain.resolve_root`` accepts it only if its
signature over the chain verifies. Fetches are bounded in size and time, and a failure is not an
error: ``ca.crt`` is then just not proven from this source.
"""

from __future__ import annotations

import logging

import requests
from cryptography import x509

from acmebridge.domain import chain as chains

log = logging.getLogger("acmebridge.aia")

MAX_AIA_BYTES = 64 * 1024


def fetch_ca_issuers(url: str, *, timeout: float = 5.0) -> list[x509.Certificate]:
    try:
        with requests.get(url, timeout=timeout, stream=True, allow_redirects=False) as resp:
            if resp.status_code != 200:
                log.info("AIA %s answered HTTP %d", url, resp.status_code)
                return []
            data = resp.raw.read(MAX_AIA_BYTES + 1, decode_content=True)
    except requests.RequestException as e:
        log.info("AIA %s not fetched: %s", url, e)
        return []
    if len(data) > MAX_AIA_BYTES:
        log.info("AIA %s is larger than %d bytes; ignored", url, MAX_AIA_BYTES)
        return []
    try:
        return list(chains.parse_aia_response(data))
    except ValueError as e:
        log.info("AIA %s is not a certificate: %s", url, e)
        return []
