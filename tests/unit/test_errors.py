"""classify() and is_user_fixable() for every RFC 8555 problem type, and the error tree's shape."""

from __future__ import annotations

from datetime import timedelta

import pytest

from acmebridge.domain.errors import (
    ACME_ERROR_PREFIX,
    AcmebridgeError,
    AcmeProblem,
    AcmeUnavailable,
    SecretConflict,
    Severity,
    SpecError,
    TLSTrustError,
    classify,
    is_user_fixable,
    short_type,
)

T, P = Severity.TEMPORARY, Severity.PERMANENT

# Every type in the RFC 8555 §6.7 table, and the two registered since (RFC 9773, profiles).
RFC_TYPES = [
    pytest.param("accountDoesNotExist", P, False, id="an unknown account is re-registered"),
    pytest.param("alreadyRevoked", P, False, id="already revoked is final"),
    pytest.param("badCSR", P, True, id="a refused CSR needs a spec change"),
    pytest.param("badNonce", T, False, id="a bad nonce is retried as it is"),
    pytest.param("badPublicKey", P, True, id="a refused key type needs a spec change"),
    pytest.param("badRevocationReason", P, False, id="a bad revocation reason is final"),
    pytest.param("badSignatureAlgorithm", P, True, id="an unsupported JWS algorithm needs a key"),
    pytest.param("caa", P, True, id="CAA records forbidding the CA are the user's DNS"),
    pytest.param("compound", P, True, id="compound without subproblems is permanent"),
    pytest.param("connection", P, True, id="an unreachable solver fails the order"),
    pytest.param("dns", P, True, id="a DNS failure at validation fails the order"),
    pytest.param("externalAccountRequired", P, True, id="a CA asking for EAB needs config"),
    pytest.param("incorrectResponse", P, True, id="a wrong challenge answer fails the order"),
    pytest.param("invalidContact", P, True, id="an invalid contact email needs a fix"),
    pytest.param("malformed", P, False, id="a malformed request is not the user's doing"),
    pytest.param("orderNotReady", T, False, id="finalizing too early is retried"),
    pytest.param("rateLimited", T, False, id="rate limits pass"),
    pytest.param("rejectedIdentifier", P, True, id="a refused name needs a spec change"),
    pytest.param("serverInternal", T, False, id="a server error passes"),
    pytest.param("tls", P, True, id="a TLS-ALPN failure fails the order"),
    pytest.param("unauthorized", P, True, id="an unauthorized identifier fails the order"),
    pytest.param("unsupportedContact", P, True, id="an unsupported contact scheme needs a fix"),
    pytest.param("unsupportedIdentifier", P, True, id="an unsupported identifier type needs a fix"),
    pytest.param("userActionRequired", P, True, id="terms to accept need a human"),
    pytest.param("alreadyReplaced", P, False, id="an already replaced certificate drops replaces"),
    pytest.param("invalidProfile", P, True, id="an unknown profile needs an Issuer fix"),
]


@pytest.mark.parametrize(("name", "severity", "fixable"), RFC_TYPES)
def test_classifies_every_rfc8555_type(name: str, severity: Severity, fixable: bool) -> None:
    urn = ACME_ERROR_PREFIX + name
    assert classify(urn) is severity
    assert is_user_fixable(urn) is fixable
    assert classify(AcmeProblem(urn, "detail", status=400)) is severity


@pytest.mark.parametrize(
    ("problem", "severity"),
    [
        pytest.param("urn:acme:error:rateLimited", T, id="legacy urn prefix is understood"),
        pytest.param("urn:acme:error:rejectedIdentifier", P, id="legacy permanent type"),
        pytest.param("urn:example:ca:weird", T, id="an unknown type string is temporary"),
        pytest.param("about:blank", T, id="about blank is temporary"),
        pytest.param("rateLimited", T, id="a bare short name is understood"),
        pytest.param(
            AcmeProblem("urn:example:ca:policy", "no", status=403),
            P,
            id="an unknown type with a 4xx status is permanent",
        ),
        pytest.param(
            AcmeProblem("urn:example:ca:slow", "wait", status=429),
            T,
            id="an unknown type with 429 is temporary",
        ),
        pytest.param(
            AcmeProblem("urn:example:ca:down", "oops", status=503),
            T,
            id="an unknown type with a 5xx status is temporary",
        ),
        pytest.param(
            AcmeProblem("urn:example:ca:mystery", "?"),
            T,
            id="an unknown type without status is temporary",
        ),
        pytest.param(
            AcmeProblem(ACME_ERROR_PREFIX + "serverInternal", "x", status=400),
            T,
            id="a known type wins over its status code",
        ),
        pytest.param(
            AcmeUnavailable("connection refused"), T, id="an unreachable server is temporary"
        ),
        pytest.param(TLSTrustError("unknown authority"), T, id="a TLS trust failure is temporary"),
        pytest.param(SpecError("InvalidSpec", "bad"), P, id="a spec error is permanent"),
        pytest.param(SecretConflict("web-tls", "taken"), P, id="a secret conflict is permanent"),
    ],
)
def test_classifies_beyond_the_table(problem: str | AcmebridgeError, severity: Severity) -> None:
    assert classify(problem) is severity


def _sub(name: str, identifier: str) -> AcmeProblem:
    return AcmeProblem(ACME_ERROR_PREFIX + name, "sub", identifier=identifier)


@pytest.mark.parametrize(
    ("subproblems", "severity", "fixable"),
    [
        pytest.param(
            (_sub("rateLimited", "a.example"), _sub("serverInternal", "b.example")),
            T,
            False,
            id="compound of temporary subproblems is temporary",
        ),
        pytest.param(
            (_sub("rateLimited", "a.example"), _sub("rejectedIdentifier", "b.example")),
            P,
            True,
            id="compound with one refused name is permanent and fixable",
        ),
        pytest.param(
            (_sub("malformed", "a.example"),),
            P,
            False,
            id="compound of operator faults is not user fixable",
        ),
    ],
)
def test_compound_problems_follow_their_subproblems(
    subproblems: tuple[AcmeProblem, ...], severity: Severity, fixable: bool
) -> None:
    problem = AcmeProblem(ACME_ERROR_PREFIX + "compound", "several", subproblems=subproblems)
    assert classify(problem) is severity
    assert is_user_fixable(problem) is fixable


@pytest.mark.parametrize(
    ("error", "fixable"),
    [
        pytest.param(AcmeUnavailable("timeout"), False, id="a timeout is not the user's to fix"),
        pytest.param(TLSTrustError("bad chain"), True, id="a TLS trust failure points at caBundle"),
        pytest.param(SpecError("InvalidSpec", "x"), True, id="a spec error is the user's"),
        pytest.param(SecretConflict("s", "x"), True, id="a secret conflict is the user's"),
        pytest.param("urn:example:unknown", False, id="an unknown type is not presumed fixable"),
    ],
)
def test_user_fixable_beyond_the_table(error: str | AcmebridgeError, fixable: bool) -> None:
    assert is_user_fixable(error) is fixable


@pytest.mark.parametrize(
    ("urn", "short"),
    [
        pytest.param(ACME_ERROR_PREFIX + "caa", "caa", id="strips the RFC 8555 prefix"),
        pytest.param("urn:acme:error:dns", "dns", id="strips the legacy prefix"),
        pytest.param("urn:example:x", "urn:example:x", id="leaves other namespaces alone"),
    ],
)
def test_short_type(urn: str, short: str) -> None:
    assert short_type(urn) == short


def test_every_error_is_an_acmebridge_error() -> None:
    for cls in (SpecError, AcmeProblem, AcmeUnavailable, TLSTrustError, SecretConflict):
        assert issubclass(cls, AcmebridgeError)
    assert issubclass(TLSTrustError, AcmeUnavailable)


def test_problem_keeps_what_the_server_said() -> None:
    problem = AcmeProblem(
        ACME_ERROR_PREFIX + "rateLimited",
        "too many certificates",
        status=429,
        retry_after=timedelta(minutes=5),
    )
    assert problem.retry_after == timedelta(minutes=5)
    assert problem.status == 429
    assert problem.subproblems == ()
    assert str(problem) == "urn:ietf:params:acme:error:rateLimited: too many certificates"


def test_spec_error_message_is_what_users_read() -> None:
    error = SpecError("InvalidSpec", "spec.duration: must be at least 5m")
    assert (error.reason, error.message, str(error)) == (
        "InvalidSpec",
        "spec.duration: must be at least 5m",
        "spec.duration: must be at least 5m",
    )


def test_errors_chain_the_original_cause() -> None:
    original = ConnectionResetError("reset by peer")
    with pytest.raises(AcmeUnavailable) as caught:
        try:
            raise original
        except ConnectionResetError as e:
            raise AcmeUnavailable(f"cannot reach the ACME server: {e}") from e
    assert caught.value.__cause__ is original
    assert caught.value.detail == "cannot reach the ACME server: reset by peer"
