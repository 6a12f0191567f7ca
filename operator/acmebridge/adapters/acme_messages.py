"""ACME wire messages (certbot's ``acme.messages`` plus what it lacks) and the plain values
acmebridge sees in their place.

josepy objects stay inside the ACME adapter: this module turns them into frozen dataclasses
once, at the boundary. It also holds the adapter's pure functions (Retry-After parsing, the ARI
certificate identifier, preferred-chain selection), which do no IO and are tested on their own.

What ``acme.messages`` 5.x lacks, and is added here by extending its classes, never by writing
JSON by hand:

- ``replaces`` on orders (RFC 9773 §5); ``profile`` on orders and ``meta.profiles`` in the
  directory are already there.
- ``explanationURL`` on renewal information (RFC 9773 §4.2).
- the authorization status ``expired`` (RFC 8555 §7.1.6): without it an expired authorization
  fails to parse at all.
- an empty JSON object to answer a challenge (RFC 8555 §7.5.1): the library writes a falsy
  payload as the empty string, which is a POST-as-GET, and a fieldless josepy object is falsy.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal

from acme import messages
from cryptography import x509
from cryptography.x509.oid import NameOID
from josepy.json_util import JSONObjectWithFields
from josepy.json_util import field as jose_field

from acmebridge.domain import ari
from acmebridge.domain.chain import parse_pem_certificates
from acmebridge.domain.errors import AcmeProblem

# The longest Retry-After acmebridge obeys anywhere; a longer header is read as this much (and an
# absurd one cannot overflow a timedelta).
from acmebridge.domain.renewal import RenewalWindow
from acmebridge.domain.schedule import MAX_RETRY_AFTER

IdentifierKind = Literal["dns", "ip"]

# RFC 8555 §7.1.6 lists "expired" for authorizations; acme 5.x does not register it. Creating a
# Status registers the name with the library's decoder, exactly as acme.messages does for its own.
STATUS_EXPIRED = messages.Status("expired")


class NewOrder(messages.NewOrder):
    """newOrder payload with ``replaces`` (RFC 9773 §5)."""

    replaces: str | None = jose_field("replaces", omitempty=True)


class Order(messages.Order):
    """Order object with ``replaces``, which the server reflects (RFC 9773 §5)."""

    replaces: str | None = jose_field("replaces", omitempty=True)


class RenewalInfoBody(messages.RenewalInfo):
    """renewalInfo object with ``explanationURL`` (RFC 9773 §4.2)."""

    explanation_url: str | None = jose_field("explanationURL", omitempty=True)


class ChallengeAnswer(JSONObjectWithFields):
    """The empty object ``{}`` POSTed to a challenge URL to ask for validation.

    ``ClientNetwork`` signs ``b''`` for any falsy payload, and a josepy object without fields has
    length 0, so without ``__bool__`` this would silently become a POST-as-GET.
    """

    def __bool__(self) -> bool:
        return True


# -- plain values -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemInfo:
    """An RFC 7807 problem document carried inside a resource (order, challenge)."""

    type: str
    detail: str | None
    status: int | None = None
    identifier: tuple[str, str] | None = None
    subproblems: tuple[ProblemInfo, ...] = ()


@dataclass(frozen=True)
class DirectoryInfo:
    new_account: str
    new_order: str
    renewal_info: str | None
    profiles: Mapping[str, str]
    external_account_required: bool
    terms_of_service: str | None
    website: str | None


@dataclass(frozen=True)
class AccountInfo:
    uri: str
    status: str
    #: the account's order list (RFC 8555 §7.1.2.1), when the server offers one
    orders: str | None = None


@dataclass(frozen=True)
class AccountRef:
    """What signs requests: the account URL (the JWS ``kid``) and its private key."""

    uri: str
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True)
class ChallengeInfo:
    type: str
    url: str
    token: str | None
    status: str
    error: ProblemInfo | None
    validated: datetime | None
    retry_after: timedelta | None = None
    #: Boulder's and Pebble's ``validationRecord``: what the CA fetched, from where (as sent)
    validation_record: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class AuthorizationInfo:
    url: str
    identifier: tuple[str, str]
    status: str
    wildcard: bool
    expires: datetime | None
    challenges: tuple[ChallengeInfo, ...]
    retry_after: timedelta | None = None


@dataclass(frozen=True)
class OrderInfo:
    url: str
    status: str
    identifiers: tuple[tuple[str, str], ...]
    authorizations: tuple[str, ...]
    finalize: str
    certificate: str | None
    expires: datetime | None
    error: ProblemInfo | None
    profile: str | None = None
    replaces: str | None = None
    retry_after: timedelta | None = None


# -- josepy -> plain ----------------------------------------------------------------------------


def problem_info(error: messages.Error | None, *, status: int | None = None) -> ProblemInfo | None:
    if error is None:
        return None
    identifier = None
    if error.identifier is not None:
        identifier = (str(error.identifier.typ.name), str(error.identifier.value))
    subproblems = tuple(
        info for sub in error.subproblems or () if (info := problem_info(sub)) is not None
    )
    return ProblemInfo(
        type=str(error.typ),
        detail=error.detail or error.title,
        status=status,
        identifier=identifier,
        subproblems=subproblems,
    )


def acme_problem(
    error: messages.Error, *, status: int | None, retry_after: timedelta | None
) -> AcmeProblem:
    """A problem document the server answered with, as the error acmebridge raises."""
    info = problem_info(error, status=status)
    assert info is not None
    return _problem_from_info(info, retry_after=retry_after)


def _problem_from_info(info: ProblemInfo, *, retry_after: timedelta | None = None) -> AcmeProblem:
    return AcmeProblem(
        info.type,
        info.detail or "",
        status=info.status,
        retry_after=retry_after,
        subproblems=tuple(_problem_from_info(s) for s in info.subproblems),
        identifier=info.identifier[1] if info.identifier else None,
    )


def directory_info(directory: messages.Directory) -> DirectoryInfo:
    meta = directory.meta
    try:
        renewal_info: str | None = str(directory["renewalInfo"])
    except KeyError:
        renewal_info = None
    return DirectoryInfo(
        new_account=str(directory["newAccount"]),
        new_order=str(directory["newOrder"]),
        renewal_info=renewal_info,
        profiles=MappingProxyType({str(k): str(v) for k, v in (meta.profiles or {}).items()}),
        external_account_required=bool(meta.external_account_required),
        terms_of_service=meta.terms_of_service,
        website=meta.website,
    )


def order_info(url: str, body: Order, *, retry_after: timedelta | None = None) -> OrderInfo:
    return OrderInfo(
        url=url,
        status=status_name(body.status),
        identifiers=tuple((str(i.typ.name), str(i.value)) for i in body.identifiers or ()),
        authorizations=tuple(str(a) for a in body.authorizations or ()),
        finalize=str(body.finalize),
        certificate=body.certificate,
        expires=body.expires,
        error=problem_info(body.error),
        profile=body.profile,
        replaces=body.replaces,
        retry_after=retry_after,
    )


def challenge_info(
    body: messages.ChallengeBody, *, retry_after: timedelta | None = None
) -> ChallengeInfo:
    # Unknown challenge types parse as UnrecognizedChallenge; its JSON still says type and token.
    chall: dict[str, Any] = body.chall.to_partial_json()
    token = chall.get("token")
    return ChallengeInfo(
        type=str(chall.get("type", "")),
        url=str(body.uri),
        token=str(token) if token is not None else None,
        status=status_name(body.status),
        error=problem_info(body.error),
        validated=body.validated,
        retry_after=retry_after,
    )


def authorization_info(
    url: str,
    body: messages.Authorization,
    *,
    retry_after: timedelta | None = None,
    raw: Any = None,
) -> AuthorizationInfo:
    """``raw`` is the authorization's JSON, for what the library does not parse (the
    challenges' validation records)."""
    records = _validation_records(raw)
    return AuthorizationInfo(
        url=url,
        identifier=(str(body.identifier.typ.name), str(body.identifier.value)),
        status=status_name(body.status),
        wildcard=bool(body.wildcard),
        expires=body.expires,
        challenges=tuple(
            replace(info, validation_record=records.get(info.url, ()))
            for info in (challenge_info(c) for c in body.challenges or ())
        ),
        retry_after=retry_after,
    )


def _validation_records(raw: Any) -> dict[str, tuple[Mapping[str, Any], ...]]:
    """Challenge URL -> its validation record entries (at most 4, plain JSON, size-bounded)."""
    out: dict[str, tuple[Mapping[str, Any], ...]] = {}
    challenges = raw.get("challenges") if isinstance(raw, dict) else None
    for ch in challenges if isinstance(challenges, list) else ():
        if not isinstance(ch, dict) or not isinstance(ch.get("url"), str):
            continue
        entries = ch.get("validationRecord")
        if isinstance(entries, list):
            out[ch["url"]] = tuple(
                MappingProxyType({k: v for k, v in e.items() if isinstance(k, str)})
                for e in entries[:4]
                if isinstance(e, dict)
            )
    return out


def renewal_info(body: RenewalInfoBody, *, retry_after: timedelta | None) -> RenewalWindow:
    """Raises ValueError for a window that RFC 9773 §4.2 says to treat as no answer at all."""
    window = body.suggested_window
    if window is None or window.start is None or window.end is None:
        raise ValueError("renewalInfo has no suggestedWindow start and end")
    if window.end <= window.start:
        raise ValueError(f"renewalInfo window ends ({window.end}) before it starts")
    return RenewalWindow(
        start=window.start,
        end=window.end,
        explanation_url=body.explanation_url,
        retry_after=retry_after,
    )


def status_name(status: messages.Status | str | None) -> str:
    """A resource status as text. Registration.status is a plain string in acme 5.x (no
    decoder), orders, authorizations and challenges decode it as a Status constant."""
    if status is None:
        return "unknown"
    return str(status.name) if isinstance(status, messages.Status) else str(status)


# -- pure functions -----------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """Retry-After (RFC 9110 §10.2.3) as a delay from ``now``: delay-seconds or an HTTP date.

    A date in the past gives zero; an unreadable value gives None; longer than a year is capped.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(timedelta(seconds=min(int(text), 10**10)), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return min(max(when - now, timedelta(0)), MAX_RETRY_AFTER)


def ari_cert_id(cert_pem: bytes) -> str:
    """The ARI identifier of the first certificate in ``cert_pem`` (see ``domain.ari``)."""
    return ari.cert_id(x509.load_pem_x509_certificates(cert_pem)[0])


def choose_chain(chains: Sequence[bytes], preferred_issuer_cn: str | None) -> bytes:
    """The first chain whose root-most certificate's issuer CN equals ``preferred_issuer_cn``.

    cert-manager's ``preferredChain`` semantics: chains are tried in order (the default chain
    first), the match is exact, and without a match the default chain is returned.
    """
    if not chains:
        raise ValueError("no certificate chain to choose from")
    if preferred_issuer_cn:
        for chain in chains:
            try:
                certs = parse_pem_certificates(chain)
            except ValueError:
                continue
            issuer_cns = certs[-1].issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            if any(attr.value == preferred_issuer_cn for attr in issuer_cns):
                return chain
    return chains[0]
