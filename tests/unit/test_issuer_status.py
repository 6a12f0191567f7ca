"""domain.issuer_status: an Issuer's Ready condition, with what to check, from how registering
its account went."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from acmebridge.domain.conditions import Condition
from acmebridge.domain.issuer_status import AccountOutcome, is_news, prune, ready_condition

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EAB = {
    "acme": {
        "externalAccountBinding": {"keyID": "kid-1", "keySecretRef": {"name": "eab", "key": "k"}}
    }
}


@pytest.mark.parametrize(
    ("outcome", "spec", "status", "reason", "words"),
    [
        pytest.param(
            AccountOutcome("registered", server="https://ca/dir"),
            {},
            "True",
            "ACMEAccountRegistered",
            "registered with https://ca/dir",
            id="a registered account is ready",
        ),
        pytest.param(
            AccountOutcome("unavailable", server="https://ca/dir", message="refused"),
            {},
            "False",
            "ACMEServerUnavailable",
            "https://ca/dir: refused",
            id="an unreachable server says which and what happened",
        ),
        pytest.param(
            AccountOutcome("tls", "TLSError", "not trusted by spec.acme.caBundle"),
            {},
            "False",
            "TLSError",
            "caBundle",
            id="a TLS failure says which trust was used",
        ),
        pytest.param(
            AccountOutcome("refused", "urn:ietf:params:acme:error:externalAccountRequired", "EAB"),
            {},
            "False",
            "ExternalAccountRequired",
            "set spec.acme.externalAccountBinding",
            id="a CA that requires EAB says how to give it",
        ),
        pytest.param(
            AccountOutcome(
                "refused", "urn:ietf:params:acme:error:serverInternal", "internal error"
            ),
            EAB,
            "False",
            "ErrRegisterACMEAccount",
            "keyID 'kid-1'",
            id="a refused binding names the key ID and Secret that were sent",
        ),
        pytest.param(
            AccountOutcome("account", "AccountKeyMissing", "the key Secret does not exist"),
            {},
            "False",
            "AccountKeyMissing",
            "does not exist",
            id="an account problem keeps its own reason",
        ),
    ],
)
def test_ready_condition(
    outcome: AccountOutcome, spec: dict[str, Any], status: str, reason: str, words: str
) -> None:
    cond = ready_condition(outcome, spec, generation=3, now=NOW)
    assert (cond.status, cond.reason) == (status, reason)
    assert words in cond.message
    assert cond.observed_generation == 3


def test_news_is_a_change_of_condition_or_of_what_the_server_offers() -> None:
    cond = ready_condition(AccountOutcome("registered", server="s"), {}, generation=1, now=NOW)
    same = Condition(cond.type, cond.status, cond.reason, cond.message, 1, NOW)
    offer = {"uri": "u", "directory": {"ari": True, "website": None}}
    assert not is_news(same, cond, stored_acme=prune(offer), acme_status=offer)
    assert is_news(same, cond, stored_acme={"uri": "old"}, acme_status=offer)
    assert is_news(None, cond, stored_acme=None, acme_status=None)
    newer = Condition(cond.type, cond.status, cond.reason, cond.message, 2, NOW)
    assert is_news(newer, cond, stored_acme=None, acme_status=None)
