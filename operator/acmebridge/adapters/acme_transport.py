"""The HTTP side of the ACME adapter: certbot's ``ClientNetwork`` on a shared transport.

``Network`` keeps the library's JWS signing, retries ``badNonce`` a few times rather than once,
and changes only the transport underneath:

- one ``requests.Session``, trust setting and nonce pool per directory (``Transport``), shared by
  every account and thread, while each call gets its own ``Network`` bound to one account key:
  ``ClientNetwork`` keeps key and account on the instance, so a shared one would let one thread
  sign with another account's key;
- bodies are streamed and refused beyond a size limit before they are held in memory;
- the nonce pool is thread-safe (the library checks emptiness, then pops: a race between threads)
  and keeps the nonce of an error response for the retry (RFC 8555 §6.5);
- problem documents keep their HTTP status, Retry-After and Location (the library drops all
  three, and turns every 409 into a bare ``ConflictError``, losing RFC 9773's ``alreadyReplaced``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.errors import DeserializationError
from josepy.json_util import decode_b64jose
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from acmebridge.adapters.acme_messages import parse_retry_after

log = logging.getLogger(__name__)

MAX_POOLED_NONCES = 64
BAD_NONCE_ATTEMPTS = 8
_EC_ALGORITHMS = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}


@dataclass(frozen=True)
class AccountKey:
    jwk: JWK
    alg: JWASignature


@functools.lru_cache(maxsize=256)
def load_account_key(pem: bytes) -> AccountKey:
    """Cached: RSA key loading checks the key and costs milliseconds, and every call signs."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"the ACME account key is not an unencrypted PEM private key: {e}") from e
    # Not jose.JWK.load: on bytes it cannot parse it returns a symmetric JWKOct of the input.
    if isinstance(key, rsa.RSAPrivateKey):
        return AccountKey(jwk=JWKRSA(key=key), alg=RS256)
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGORITHMS:
        return AccountKey(jwk=JWKEC(key=key), alg=_EC_ALGORITHMS[key.curve.name])
    raise ValueError("the ACME account key must be RSA or ECDSA P-256, P-384 or P-521")


class NoncePool:
    """Replay nonces shared by every request to one directory (RFC 8555 §6.5)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nonces: deque[bytes] = deque(maxlen=MAX_POOLED_NONCES)

    def put(self, nonce: bytes) -> None:
        with self._lock:
            self._nonces.append(nonce)

    def take(self) -> bytes | None:
        with self._lock:
            return self._nonces.pop() if self._nonces else None


@dataclass(frozen=True)
class Transport:
    """What every request to one directory shares. The session does not read the environment
    (``trust_env`` off): requests would read the proxy variables again and look for ``~/.netrc``
    on every request, 2% of the operator's CPU in a burst. The environment is read once instead
    (``environment_verify``, ``proxies_for``), with requests' own rules."""

    session: requests.Session
    verify: bool | str
    user_agent: str
    timeout: tuple[float, float]
    max_response_bytes: int
    nonces: NoncePool
    #: origin (scheme://host:port) -> the proxies the environment names for it
    proxies: dict[str, dict[str, str]] = field(default_factory=dict)

    def proxies_for(self, url: str) -> dict[str, str]:
        """``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` as requests applies them, read once per
        origin (the environment of a running process does not change)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self.proxies.get(origin)
        if found is None:
            found = self.proxies[origin] = dict(requests.utils.get_environ_proxies(url))
        return found


def environment_verify(verify: bool | str) -> bool | str:
    """What requests verifies against when it reads the environment: ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE`` instead of its default store; a CA file given (caBundle) or verification
    turned off stay as they are."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


class HttpError(Exception):
    """An HTTP failure that is not an ACME problem document (a proxy's 502 page, a too-big body)."""


class Network(acme_client.ClientNetwork):
    """``ClientNetwork`` for one call: one account key, the directory's shared transport.

    Overrides keep the library's signing and JWS, retry badNonce up to ``BAD_NONCE_ATTEMPTS``
    times, and change only transport:
    streamed size-limited reads, the shared nonce pool, and problem documents that keep their
    HTTP status and Retry-After (the library drops both, and turns every 409 into a bare
    ``ConflictError`` that loses RFC 9773's ``alreadyReplaced``).
    """

    def __init__(self, transport: Transport, key: AccountKey | None, kid: str | None) -> None:
        # verify and timeout are applied per request in _send_request.
        super().__init__(
            key=key.jwk if key else None,
            alg=key.alg if key else RS256,
            user_agent=transport.user_agent,
        )
        self.session.close()
        self.session = transport.session
        self._transport = transport
        if kid is not None:
            self.account = messages.RegistrationResource(body=messages.Registration(), uri=kid)

    def __del__(self) -> None:
        # The library closes its requests.Session here; this one is shared: AcmeSession.close().
        pass

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        """POST, retrying ``badNonce`` up to ``BAD_NONCE_ATTEMPTS`` times in all.

        RFC 8555 §6.5 asks clients to retry a ``badNonce`` with a fresh nonce, which the error
        response carries. The library retries once; a CA that rejects many nonces (Pebble's
        ``PEBBLE_WFE_NONCEREJECT``, a load balancer over servers that do not share nonces) would
        then fail whole issuance steps, each costing a backoff. A rejected nonce changes nothing
        on the server, so repeating the request is safe.
        """
        for attempt in range(1, BAD_NONCE_ATTEMPTS + 1):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce" or attempt == BAD_NONCE_ATTEMPTS:
                    raise
                log.debug("attempt %d of %d: %s; retrying", attempt, BAD_NONCE_ATTEMPTS, error)
        raise AssertionError("unreachable")

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        t = self._transport
        headers = kwargs.setdefault("headers", {})
        headers.setdefault("User-Agent", t.user_agent)
        kwargs["verify"] = t.verify
        kwargs["timeout"] = t.timeout
        kwargs["proxies"] = t.proxies_for(url)
        kwargs["stream"] = True
        log.debug("%s %s", method, url)
        response = t.session.request(method, url, *args, **kwargs)
        try:
            response._content = _read_limited(response, t.max_response_bytes, sum(t.timeout))
        finally:
            response.close()
        if "Accept" not in headers:
            response.encoding = "utf-8"
        log.debug("%s %s -> %d", method, url, response.status_code)
        if method == "POST" and not response.ok:
            # The nonce of an error response is good for the retry (RFC 8555 §6.5).
            self._pool_nonce(response)
        return response

    @classmethod
    def _check_response(
        cls, response: requests.Response, content_type: str | None = None
    ) -> requests.Response:
        if not response.ok:
            jobj = _json_or_none(response)
            if isinstance(jobj, dict) and "type" in jobj:
                error = messages.Error.from_json(jobj)
                # messages.Error allows attributes to be set (it is an exception too).
                setattr(error, "http_status", response.status_code)  # noqa: B010
                setattr(error, "retry_after", retry_after_of(response))  # noqa: B010
                setattr(error, "location", response.headers.get("Location"))  # noqa: B010
                raise error
            if response.status_code == 409 and "Location" in response.headers:
                raise acme_errors.ConflictError(response.headers["Location"])
            raise HttpError(
                f"HTTP {response.status_code} from {response.url} without a problem document"
            )
        return super()._check_response(response, content_type=content_type)

    # The library annotates nonces as str but stores and signs the decoded bytes.
    def _get_nonce(self, url: str, new_nonce_url: str | None) -> bytes:  # type: ignore[override]
        nonce = self._transport.nonces.take()
        if nonce is not None:
            return nonce
        response = self._check_response(self.head(new_nonce_url or url), content_type=None)
        return _decode_nonce(response)

    def _add_nonce(self, response: requests.Response) -> None:
        self._pool_nonce(response)

    def _pool_nonce(self, response: requests.Response) -> None:
        if self.REPLAY_NONCE_HEADER in response.headers:
            self._transport.nonces.put(_decode_nonce(response))


def _decode_nonce(response: requests.Response) -> bytes:
    value = response.headers.get("Replay-Nonce")
    if value is None:
        raise acme_errors.MissingNonce(response)
    try:
        return bytes(decode_b64jose(value))
    except DeserializationError as e:
        raise acme_errors.BadNonce(value, e) from e


def _read_limited(response: requests.Response, limit: int, total_seconds: float) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(f"{response.url} answered with {declared} bytes; the limit is {limit}")
    deadline = time.monotonic() + total_seconds
    body = bytearray()
    # read1: whatever one socket read brings. iter_content would wait until each 64 KiB chunk
    # is full, so a server sending a byte at a time (within the per-read timeout) would hold
    # the worker thread for days before the deadline was looked at. urllib3 caps what one read
    # may decompress to, so a compressed body cannot blow up past the limit either.
    try:
        while chunk := response.raw.read1(65536, decode_content=True):
            body += chunk
            if len(body) > limit:
                raise HttpError(f"{response.url} answered with more than {limit} bytes")
            if time.monotonic() > deadline:
                raise requests.exceptions.ReadTimeout(f"{response.url} did not finish in time")
    # urllib3's errors, as requests' iter_content translates them, for AcmeSession to classify.
    except urllib3.exceptions.ProtocolError as e:
        raise requests.exceptions.ChunkedEncodingError(e) from e
    except urllib3.exceptions.DecodeError as e:
        raise requests.exceptions.ContentDecodingError(e) from e
    except urllib3.exceptions.ReadTimeoutError as e:
        raise requests.exceptions.ConnectionError(e) from e
    except urllib3.exceptions.SSLError as e:
        raise requests.exceptions.SSLError(e) from e
    return bytes(body)


def release(session: requests.Session, ca_file: str | None) -> None:
    session.close()
    if ca_file is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(ca_file)


def find_ssl_error(error: BaseException) -> ssl.SSLError | None:
    """The ssl module's exception under requests' and urllib3's wrappers, if any."""
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return current
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return None


def innermost_reason(error: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 exception chain."""
    current: BaseException = error
    for _ in range(8):
        inner = getattr(current, "reason", None)
        if isinstance(inner, BaseException):
            current = inner
            continue
        args = [a for a in current.args if isinstance(a, BaseException)]
        if args:
            current = args[0]
            continue
        break
    return str(current) or type(current).__name__


def retry_after_of(response: requests.Response) -> timedelta | None:
    return parse_retry_after(response.headers.get("Retry-After"), now=datetime.now(UTC))


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
