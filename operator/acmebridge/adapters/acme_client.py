"""One ACME directory, spoken to through certbot's ``acme`` library, one request per call.

``AcmeSession`` is synchronous and never waits for state: no sleep, no polling loop. The operator
runs it in a bounded executor and polls across reconcile calls (DESIGN §3), so every method is one
ACME exchange (plus a directory or nonce fetch when none is cached). ``ClientV2``'s convenience
methods sleep, so this module drives ``ClientNetwork`` directly.

Invariants (the transport ones are explained in ``acme_transport``):

- One ``requests.Session``, one trust configuration and one nonce pool per directory, shared by
  every account and every thread using it; each call signs through its own ``ClientNetwork``.
- With ``ca_bundle`` set, only that bundle is trusted (a file requests hands to OpenSSL as its
  sole CA file; urllib3 then loads no default store); with ``skip_tls_verify`` nothing is.
- Response bodies larger than ``max_response_bytes`` are refused while streaming, before they are
  held in memory.
- Only ``acmebridge.domain.errors`` leave: ``AcmeProblem`` for problem documents (with the HTTP
  status and Retry-After), ``TLSTrustError`` for certificate verification, ``AcmeUnavailable`` for
  everything that says the server could not be used. Caller mistakes (a malformed key or CSR)
  raise ``ValueError`` before any request is made.
- ``badNonce`` is retried by ``Network.post`` (up to ``BAD_NONCE_ATTEMPTS`` in all); each retry
  uses the nonce from the error response (RFC 8555 §6.5) rather than fetching a new one.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import urljoin

import requests
from acme import challenges, messages
from acme import errors as acme_errors
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.errors import DeserializationError
from requests.utils import parse_header_links

from acmebridge.adapters import acme_messages as wire
from acmebridge.adapters.acme_messages import (
    AccountInfo,
    AccountRef,
    AuthorizationInfo,
    ChallengeInfo,
    DirectoryInfo,
    IdentifierKind,
    OrderInfo,
)
from acmebridge.adapters.acme_transport import (
    AccountKey,
    HttpError,
    Network,
    NoncePool,
    Transport,
    environment_verify,
    find_ssl_error,
    innermost_reason,
    load_account_key,
    release,
    retry_after_of,
)
from acmebridge.domain.chain import parse_pem_certificates
from acmebridge.domain.errors import AcmeProblem, AcmeUnavailable, TLSTrustError, short_type
from acmebridge.domain.renewal import RenewalWindow

log = logging.getLogger(__name__)

T = TypeVar("T")
OnRequest = Callable[[str, str, float], None]
"""``on_request(kind, outcome, seconds)``: called once per adapter call, from its thread."""

DEFAULT_USER_AGENT = "acmebridge"
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_ALTERNATE_CHAINS = 8
#: account keys a session keeps a signer for; more are rare (a key rotated, Issuers sharing a
#: server), and past it the cache starts again
MAX_NETWORKS = 64

_JSON = "application/json"
_JOSE = "application/jose+json"
_PEM_CHAIN = "application/pem-certificate-chain"


def generate_account_key() -> bytes:
    """A new ACME account key: ECDSA P-256 (signs ES256), PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_authorization(account: AccountRef, challenge: ChallengeInfo) -> str:
    """What a solver presents: the key authorization for http-01 (RFC 8555 §8.3), the TXT
    record value for dns-01 (§8.4). Raises ValueError for other challenge types."""
    if challenge.token is None:
        raise ValueError(f"{challenge.type} challenge {challenge.url} has no token")
    return _key_authorization(account.key_pem, challenge.type, challenge.token, challenge.url)


@functools.lru_cache(maxsize=1024)
def _key_authorization(key_pem: bytes, type_: str, token: str, url: str) -> str:
    """Cached: an issuance asks for it at least twice (present, each self check), and each time
    the library hashes the account key's JWK anew (2% of the operator's CPU in a burst)."""
    try:
        chall = challenges.Challenge.from_json({"type": type_, "token": token})
    except DeserializationError as e:
        raise ValueError(f"{type_} challenge {url}: {e}") from e
    jwk = load_account_key(key_pem).jwk
    if isinstance(chall, challenges.DNS01):
        return str(chall.validation(jwk))
    if isinstance(chall, challenges.HTTP01):
        return str(chall.key_authorization(jwk))
    raise ValueError(f"challenge type {type_!r} is not supported")


class AcmeSession:
    """Requests to one ACME directory. Thread-safe; ``close()`` when the Issuer goes away."""

    def __init__(
        self,
        directory_url: str,
        *,
        ca_bundle: bytes | None = None,
        skip_tls_verify: bool = False,
        user_agent: str = DEFAULT_USER_AGENT,
        timeout: tuple[float, float] = (5, 30),
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        on_request: OnRequest | None = None,
    ) -> None:
        if ca_bundle is not None and skip_tls_verify:
            raise ValueError("caBundle and skipTLSVerify are mutually exclusive")
        self.directory_url = directory_url
        self._ca_bundle_set = ca_bundle is not None
        self._on_request = on_request
        self._lock = threading.Lock()
        self._directory: messages.Directory | None = None
        self._networks: dict[tuple[AccountKey | None, str | None], Network] = {}
        verify: bool | str = not skip_tls_verify
        self._ca_file: str | None = None
        if ca_bundle is not None:
            try:
                parse_pem_certificates(ca_bundle, max_certs=150)
            except ValueError as e:
                raise ValueError(f"caBundle: {e}") from e
            fd, self._ca_file = tempfile.mkstemp(prefix="acmebridge-ca-", suffix=".pem")
            with os.fdopen(fd, "wb") as f:
                f.write(ca_bundle)
            verify = self._ca_file
        session = requests.Session()
        session.trust_env = False  # read once instead: Transport
        self._transport = Transport(
            session=session,
            verify=environment_verify(verify),
            user_agent=user_agent,
            timeout=timeout,
            max_response_bytes=max_response_bytes,
            nonces=NoncePool(),
        )
        self._finalizer = weakref.finalize(self, release, session, self._ca_file)

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> AcmeSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- directory and account ------------------------------------------------------------------

    def directory(self, *, refresh: bool = False) -> DirectoryInfo:
        """The directory, fetched once and then cached (``refresh`` fetches it again)."""
        return wire.directory_info(self._get_directory(refresh=refresh))

    def register_account(
        self,
        account_key_pem: bytes,
        *,
        email: str | None = None,
        eab: tuple[str, str, str] | None = None,
        only_return_existing: bool = False,
    ) -> AccountInfo:
        """Register the key's account, agreeing to the terms of service, or find it if it exists.

        ``eab`` is ``(key_id, hmac_key_base64url, alg)`` with alg one of HS256/HS384/HS512. With
        ``only_return_existing`` nothing is created: an unknown key raises ``AcmeProblem``
        ``accountDoesNotExist``.
        """
        key = load_account_key(account_key_pem)
        if eab is not None and eab[2] not in ("HS256", "HS384", "HS512"):
            raise ValueError(f"externalAccountBinding algorithm {eab[2]!r} is not supported")
        directory = self._get_directory()

        def call() -> AccountInfo:
            if only_return_existing:
                reg = messages.NewRegistration(only_return_existing=True)
            else:
                binding = None
                if eab is not None:
                    kid, hmac_key, alg = eab
                    binding = messages.ExternalAccountBinding.from_data(
                        key.jwk.public_key(), kid, hmac_key, directory, hmac_alg=alg
                    )
                reg = messages.NewRegistration.from_data(
                    email=email,
                    terms_of_service_agreed=True,
                    external_account_binding=binding,
                )
            net = self._network(key, kid=None)
            try:
                response = net.post(
                    directory["newAccount"], reg, new_nonce_url=directory["newNonce"]
                )
            except acme_errors.ConflictError as conflict:
                # Pre-RFC servers answer an existing key with 409 and the account's Location.
                return AccountInfo(uri=str(conflict.location), status="valid")
            except messages.Error as error:
                location = getattr(error, "location", None)
                if getattr(error, "http_status", None) == 409 and location:
                    return AccountInfo(uri=str(location), status="valid")
                raise
            uri = _location(response, "newAccount")
            raw = response.json()
            body = messages.Registration.from_json(raw)
            orders = raw.get("orders") if isinstance(raw, dict) else None
            return AccountInfo(
                uri=uri,
                status=wire.status_name(body.status),
                orders=urljoin(response.url, orders) if isinstance(orders, str) else None,
            )

        return self._call("new_account", call)

    # -- orders ---------------------------------------------------------------------------------

    def new_order(
        self,
        account: AccountRef,
        *,
        identifiers: Sequence[tuple[IdentifierKind, str]],
        profile: str | None = None,
        replaces: str | None = None,
    ) -> OrderInfo:
        """newOrder; ``replaces`` is the ARI identifier of the certificate being renewed."""
        ids = [_identifier(kind, value) for kind, value in identifiers]
        if not ids:
            raise ValueError("an order needs at least one identifier")
        key = load_account_key(account.key_pem)
        payload = wire.NewOrder(identifiers=ids, profile=profile, replaces=replaces)
        directory = self._get_directory()

        def call() -> OrderInfo:
            net = self._network(key, kid=account.uri)
            response = net.post(directory["newOrder"], payload, new_nonce_url=self._nonce_url)
            body = wire.Order.from_json(response.json())
            url = _location(response, "newOrder")
            return wire.order_info(url, body, retry_after=retry_after_of(response))

        return self._call("new_order", call)

    def list_orders(self, account: AccountRef, orders_url: str, *, max_pages: int) -> list[str]:
        """The account's order URLs, oldest first as servers list them (RFC 8555 §7.1.2.1),
        following ``Link: rel="next"`` for at most ``max_pages`` pages."""
        key = load_account_key(account.key_pem)

        def call() -> list[str]:
            urls: list[str] = []
            page: str | None = orders_url
            for _ in range(max_pages):
                if page is None:
                    break
                response = self._post_as_get(key, account.uri, page)
                body = response.json()
                listed = body.get("orders") if isinstance(body, dict) else None
                if not isinstance(listed, list):
                    raise AcmeUnavailable(f"{page} is not an ACME order list")
                urls += [urljoin(response.url, u) for u in listed if isinstance(u, str)]
                nexts = _links(response, "next")
                page = nexts[0] if nexts else None
            return urls

        return self._call("list_orders", call)

    def get_order(self, account: AccountRef, url: str) -> OrderInfo:
        key = load_account_key(account.key_pem)

        def call() -> OrderInfo:
            response = self._post_as_get(key, account.uri, url)
            body = wire.Order.from_json(response.json())
            return wire.order_info(url, body, retry_after=retry_after_of(response))

        return self._call("get_order", call)

    def get_authorization(self, account: AccountRef, url: str) -> AuthorizationInfo:
        key = load_account_key(account.key_pem)

        def call() -> AuthorizationInfo:
            response = self._post_as_get(key, account.uri, url)
            raw = response.json()
            body = messages.Authorization.from_json(raw)
            return wire.authorization_info(url, body, retry_after=retry_after_of(response), raw=raw)

        return self._call("get_authorization", call)

    def answer_challenge(self, account: AccountRef, challenge_url: str) -> ChallengeInfo:
        """Tell the server the challenge is ready to be validated; returns its new state."""
        key = load_account_key(account.key_pem)

        def call() -> ChallengeInfo:
            net = self._network(key, kid=account.uri)
            response = net.post(
                challenge_url, wire.ChallengeAnswer(), new_nonce_url=self._nonce_url
            )
            body = messages.ChallengeBody.from_json(response.json())
            return wire.challenge_info(body, retry_after=retry_after_of(response))

        return self._call("answer_challenge", call)

    def finalize(self, account: AccountRef, order: OrderInfo, csr_pem: bytes) -> OrderInfo:
        """POST the CSR to the order's finalize URL. Does not wait: the order is usually
        ``processing`` or already ``valid``; poll with ``get_order``."""
        csr = x509.load_pem_x509_csr(csr_pem)
        key = load_account_key(account.key_pem)

        def call() -> OrderInfo:
            net = self._network(key, kid=account.uri)
            response = net.post(
                order.finalize, messages.CertificateRequest(csr=csr), new_nonce_url=self._nonce_url
            )
            body = wire.Order.from_json(response.json())
            return wire.order_info(order.url, body, retry_after=retry_after_of(response))

        return self._call("finalize", call)

    def download_chains(self, account: AccountRef, certificate_url: str) -> list[bytes]:
        """The default chain, then every ``Link: rel="alternate"`` chain (RFC 8555 §7.4.2), PEM.

        Each must hold at least one certificate; at most ``MAX_ALTERNATE_CHAINS`` alternates are
        fetched. Pick one with ``choose_chain``.
        """
        key = load_account_key(account.key_pem)

        def fetch(url: str) -> tuple[bytes, requests.Response]:
            response = self._post_as_get(key, account.uri, url, accept=_PEM_CHAIN)
            try:
                parse_pem_certificates(response.content)
            except ValueError as e:
                raise AcmeUnavailable(
                    f"certificate URL {url} did not return a PEM chain: {e}"
                ) from e
            return response.content, response

        def call() -> list[bytes]:
            default, response = fetch(certificate_url)
            chains = [default]
            alternates = _links(response, "alternate")
            if len(alternates) > MAX_ALTERNATE_CHAINS:
                log.warning(
                    "%s offers %d alternate chains; fetching the first %d",
                    certificate_url,
                    len(alternates),
                    MAX_ALTERNATE_CHAINS,
                )
            for url in alternates[:MAX_ALTERNATE_CHAINS]:
                chains.append(fetch(url)[0])
            return chains

        return self._call("download_certificate", call)

    # -- ARI ------------------------------------------------------------------------------------

    def renewal_info(self, cert_id: str) -> RenewalWindow | None:
        """The certificate's suggested renewal window (RFC 9773 §4), or None when the directory
        does not advertise ``renewalInfo``. An invalid window raises ``AcmeUnavailable``, as the
        RFC says to treat it like no answer."""
        directory = self._get_directory()
        try:
            base = str(directory["renewalInfo"])
        except KeyError:
            return None
        url = f"{base.rstrip('/')}/{cert_id}"

        def call() -> RenewalWindow:
            response = self._network(None, kid=None).get(url, content_type=_JSON)
            body = wire.RenewalInfoBody.from_json(response.json())
            try:
                return wire.renewal_info(body, retry_after=retry_after_of(response))
            except ValueError as e:
                raise AcmeUnavailable(f"{url}: {e}") from e

        return self._call("renewal_info", call)

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def _nonce_url(self) -> str:
        return str(self._get_directory()["newNonce"])

    def _get_directory(self, *, refresh: bool = False) -> messages.Directory:
        with self._lock:
            cached = self._directory
        if cached is not None and not refresh:
            return cached

        def call() -> messages.Directory:
            response = self._network(None, kid=None).get(self.directory_url, content_type=_JSON)
            jobj = response.json()
            if not isinstance(jobj, dict) or not all(
                isinstance(jobj.get(k), str) for k in ("newNonce", "newAccount", "newOrder")
            ):
                raise AcmeUnavailable(
                    f"{self.directory_url} is not an ACME directory "
                    "(no newNonce, newAccount and newOrder URLs)"
                )
            return messages.Directory.from_json(jobj)

        directory = self._call("directory", call)
        with self._lock:
            self._directory = directory
        return directory

    def _network(self, key: AccountKey | None, *, kid: str | None) -> Network:
        """One per account key and account URL, reused: a ``Network`` holds no state of its own
        between requests (nonces are in the transport's pool), and building one builds a
        ``requests.Session`` that is thrown away (1% of the operator's CPU in a burst)."""
        with self._lock:
            net = self._networks.get((key, kid))
            if net is None:
                if len(self._networks) >= MAX_NETWORKS:
                    self._networks.clear()
                net = self._networks[(key, kid)] = Network(self._transport, key, kid)
        return net

    def _post_as_get(
        self, key: AccountKey, kid: str, url: str, *, accept: str | None = None
    ) -> requests.Response:
        net = self._network(key, kid=kid)
        headers = {"Content-Type": _JOSE}
        if accept:
            headers["Accept"] = accept
        return net.post(url, None, new_nonce_url=self._nonce_url, headers=headers)

    def _call(self, kind: str, fn: Callable[[], T]) -> T:
        """Run one exchange: time it, report it, and translate every library error."""
        started = time.monotonic()
        outcome = "error"
        try:
            result = fn()
            outcome = "ok"
            return result
        except AcmeProblem as e:
            outcome = _problem_outcome(e.type)
            raise
        except TLSTrustError:
            outcome = "tls"
            raise
        except AcmeUnavailable:
            outcome = "unavailable"
            raise
        except messages.Error as e:
            problem = wire.acme_problem(
                e,
                status=getattr(e, "http_status", None),
                retry_after=getattr(e, "retry_after", None),
            )
            outcome = _problem_outcome(problem.type)
            raise problem from e
        except requests.exceptions.SSLError as e:
            outcome = "tls"
            raise self._tls_error(e) from e
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            outcome = "unavailable"
            raise AcmeUnavailable(f"cannot reach the ACME server: {innermost_reason(e)}") from e
        except (DeserializationError, acme_errors.Error, requests.exceptions.JSONDecodeError) as e:
            # Before RequestException: requests' JSONDecodeError is one too.
            outcome = "unavailable"
            raise AcmeUnavailable(f"unexpected response from the ACME server: {e!r}") from e
        except requests.exceptions.RequestException as e:
            outcome = "unavailable"
            raise AcmeUnavailable(
                f"request to the ACME server failed: {innermost_reason(e)}"
            ) from e
        except HttpError as e:
            outcome = "unavailable"
            raise AcmeUnavailable(str(e)) from e
        finally:
            self._report(kind, outcome, time.monotonic() - started)

    def _report(self, kind: str, outcome: str, seconds: float) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(kind, outcome, seconds)
        except Exception:
            log.exception("on_request callback failed")

    def _tls_error(self, error: requests.exceptions.SSLError) -> TLSTrustError:
        cause = find_ssl_error(error)
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or str(cause)
            if self._ca_bundle_set:
                return TLSTrustError(
                    "the ACME server's TLS certificate is not trusted by spec.acme.caBundle: "
                    f"{reason}"
                )
            return TLSTrustError(
                "the ACME server's TLS certificate is not trusted by the system trust store "
                f"(set spec.acme.caBundle to the CA that issued it): {reason}"
            )
        reason = str(cause) if cause is not None else innermost_reason(error)
        return TLSTrustError(f"TLS handshake with the ACME server failed: {reason}")


# -- small translations -------------------------------------------------------------------------


def _identifier(kind: str, value: str) -> messages.Identifier:
    if kind == "dns":
        return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=value)
    if kind == "ip":
        return messages.Identifier(typ=messages.IDENTIFIER_IP, value=value)
    raise ValueError(f"identifier type {kind!r} is not 'dns' or 'ip'")


def _location(response: requests.Response, what: str) -> str:
    location = response.headers.get("Location")
    if not location:
        raise AcmeUnavailable(f"the ACME server's {what} response has no Location header")
    return urljoin(response.url, location)


def _links(response: requests.Response, rel: str) -> list[str]:
    # response.links keeps one link per rel; RFC 8555 §7.4.2 servers send several alternates.
    header = response.headers.get("Link")
    if not header:
        return []
    return [
        urljoin(response.url, link["url"])
        for link in parse_header_links(header)
        if link.get("rel") == rel and link.get("url")
    ]


def _problem_outcome(problem_type: str) -> str:
    """A bounded label: RFC 8555 / 9773 short types, anything else is ``problem``."""
    name = short_type(problem_type)
    return name if name in messages.ERROR_CODES or name == "alreadyReplaced" else "problem"
