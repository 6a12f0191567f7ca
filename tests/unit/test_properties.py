"""Properties that must hold for every input, not only the ones in the tables.

Spec parsing sees whatever is in etcd, so no input may crash it with anything but SpecError (a
crash would loop the handler instead of telling the user). The time math must keep its promises
for every lifetime, seed and failure count.
"""

from __future__ import annotations

import contextlib
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from acmebridge.domain.conditions import Condition, get_condition, set_condition
from acmebridge.domain.durations import format_go_duration, parse_go_duration
from acmebridge.domain.errors import SpecError
from acmebridge.domain.issuer_spec import AcmeIssuerSpec
from acmebridge.domain.schedule import (
    MAX_RETRY_AFTER,
    backoff_delay,
    choose_in_window,
    jitter_for,
    renewal_time,
)
from acmebridge.domain.spec import CertificateSpec
from acmebridge.domain.timefmt import format_time, parse_time

# --- strategies ------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)

# Values that look like what a user might write, to get past the first checks more often.
plausible_strings = st.sampled_from(
    [
        "",
        "web.example.com",
        "*.example.com",
        "a.*.b",
        "10.0.0.1",
        "2001:db8::1",
        "1h",
        "5m",
        "90d",
        "-1h",
        "RSA",
        "ECDSA",
        "Ed25519",
        "PKCS8",
        "server auth",
        "https://ca.example/dir",
        "http://ca.example/dir",
        "acmebridge.io/x",
        "spiffe://a/b",
        "a@b",
        "ns:53",
        "[::1]:53",
        "HMACSHA256",
        "ClusterIssuer",
    ]
)
plausible = st.recursive(
    json_scalars | plausible_strings,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(plausible_strings | st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)

CERT_FIELDS = [
    "secretName",
    "issuerRef",
    "commonName",
    "dnsNames",
    "ipAddresses",
    "uris",
    "emailAddresses",
    "duration",
    "renewBefore",
    "renewBeforePercentage",
    "privateKey",
    "usages",
    "secretTemplate",
    "subject",
]
ACME_FIELDS = [
    "server",
    "email",
    "caBundle",
    "issuingCABundle",
    "skipTLSVerify",
    "privateKeySecretRef",
    "externalAccountBinding",
    "profile",
    "preferredChain",
    "disableAccountKeyGeneration",
    "solvers",
]
VALID_CERT: dict[str, Any] = {
    "secretName": "web-tls",
    "issuerRef": {"name": "ca"},
    "dnsNames": ["web.example.com"],
}
VALID_ACME: dict[str, Any] = {
    "server": "https://ca.example/dir",
    "privateKeySecretRef": {"name": "account"},
    "solvers": [{"http01": {"ingress": {}}}, {"dns01": {"rfc2136": {"nameserver": "ns"}}}],
}


def _parses_or_spec_error(parse: Any, body: Any) -> None:
    try:
        parsed = parse(body)
    except SpecError as e:
        assert e.reason == "InvalidSpec"
        assert e.message.startswith("spec")
    else:
        hash(parsed)  # frozen all the way down


# --- spec parsing never crashes --------------------------------------------------------------


@given(json_values)
def test_any_json_is_a_certificate_or_a_spec_error(body: Any) -> None:
    _parses_or_spec_error(CertificateSpec.from_body, body)


@given(st.dictionaries(st.sampled_from(CERT_FIELDS), plausible, max_size=6))
def test_a_valid_certificate_with_any_fields_replaced_never_crashes(
    changes: dict[str, Any],
) -> None:
    _parses_or_spec_error(CertificateSpec.from_body, {**VALID_CERT, **changes})


@given(json_values)
def test_any_json_is_an_issuer_or_a_spec_error(body: Any) -> None:
    _parses_or_spec_error(AcmeIssuerSpec.from_body, {"acme": body})


@given(st.dictionaries(st.sampled_from(ACME_FIELDS), plausible, max_size=6))
def test_a_valid_issuer_with_any_fields_replaced_never_crashes(changes: dict[str, Any]) -> None:
    _parses_or_spec_error(AcmeIssuerSpec.from_body, {"acme": {**VALID_ACME, **changes}})


@given(
    st.sampled_from(["http01", "dns01"]),
    st.dictionaries(
        st.sampled_from(["ingress", "rfc2136", "podTemplate", "spec", "nameserver", "selector"]),
        plausible,
        max_size=3,
    ),
)
def test_any_solver_is_parsed_or_refused(kind: str, solver: dict[str, Any]) -> None:
    _parses_or_spec_error(
        AcmeIssuerSpec.from_body, {"acme": {**VALID_ACME, "solvers": [{kind: solver}]}}
    )


@given(st.lists(st.text(alphabet="abcXYZ019-.*", min_size=1, max_size=12), min_size=1, max_size=5))
def test_parsed_names_are_normal_and_unique(names: list[str]) -> None:
    try:
        spec = CertificateSpec.from_body({**VALID_CERT, "dnsNames": names})
    except SpecError:
        return
    assert len(set(spec.dns_names)) == len(spec.dns_names)
    for name in spec.dns_names:
        assert name == name.lower() and not name.endswith(".")
        assert "*" not in name[1:]
    again = CertificateSpec.from_body({**VALID_CERT, "dnsNames": list(spec.dns_names)})
    assert again == spec  # normalising is idempotent
    assert again.issuance_hash() == spec.issuance_hash()


@given(json_values)
def test_parsing_does_not_modify_its_input(body: Any) -> None:
    snapshot = copy.deepcopy(body)
    with contextlib.suppress(SpecError):
        CertificateSpec.from_body(body)
    assert json.dumps(body, sort_keys=True, default=str) == json.dumps(
        snapshot, sort_keys=True, default=str
    )


# --- time math -------------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
lifetimes = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3650))
maybe_delta = st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000))


@given(
    moments,
    lifetimes,
    maybe_delta,
    st.none() | st.integers(min_value=-10, max_value=110),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000)),
)
def test_renewal_is_within_validity(
    not_before: datetime,
    lifetime: timedelta,
    renew_before: timedelta | None,
    percentage: int | None,
    jitter: timedelta,
) -> None:
    not_after = not_before + lifetime
    assume(not_after.replace(microsecond=0) > not_before.replace(microsecond=0))
    got = renewal_time(
        not_before,
        not_after,
        renew_before=renew_before,
        renew_before_percentage=percentage,
        jitter=jitter,
    )
    assert not_before.replace(microsecond=0) <= got <= not_after
    assert got.microsecond == 0
    # The jitter never postpones: renewal is no later than without it.
    without = renewal_time(
        not_before,
        not_after,
        renew_before=renew_before,
        renew_before_percentage=percentage,
        jitter=timedelta(0),
    )
    assert got <= without


@given(st.text(max_size=40), lifetimes)
def test_jitter_is_deterministic_and_bounded(uid: str, lifetime: timedelta) -> None:
    j = jitter_for(uid, lifetime)
    assert j == jitter_for(uid, lifetime)
    assert timedelta(0) <= j <= min(timedelta(hours=6), lifetime * 0.05)


@given(st.text(max_size=20), st.integers(min_value=0, max_value=200))
def test_backoff_is_monotone_and_capped(seed: str, failures: int) -> None:
    cap = timedelta(hours=1)
    now, later = backoff_delay(failures, seed=seed), backoff_delay(failures + 1, seed=seed)
    assert timedelta(0) <= now <= later <= cap


@given(
    st.text(max_size=20),
    st.integers(min_value=0, max_value=200),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_backoff_with_retry_after(seed: str, failures: int, retry_after: timedelta) -> None:
    got = backoff_delay(failures, retry_after=retry_after, seed=seed)
    assert got >= min(retry_after, MAX_RETRY_AFTER)  # the server is obeyed...
    assert got <= max(timedelta(hours=1), MAX_RETRY_AFTER)  # ...up to a day
    assert got <= backoff_delay(failures + 1, retry_after=retry_after, seed=seed)


@given(moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)), st.text())
def test_window_choice_is_inside(start: datetime, width: timedelta, seed: str) -> None:
    end = start + width
    got = choose_in_window(start, end, seed=seed)
    assert got == choose_in_window(start, end, seed=seed)
    if got != start:
        assert start <= got < end and got.microsecond == 0


# --- round trips -----------------------------------------------------------------------------


@given(st.timedeltas(min_value=-timedelta(days=100_000), max_value=timedelta(days=100_000)))
def test_go_duration_round_trips(value: timedelta) -> None:
    assert parse_go_duration(format_go_duration(value)) == value


@given(st.text(max_size=20))
def test_go_duration_parses_or_says_why(text: str) -> None:
    try:
        parse_go_duration(text)
    except ValueError as e:
        assert "invalid duration" in str(e)


@given(moments)
def test_time_round_trips_to_the_second(moment: datetime) -> None:
    assert parse_time(format_time(moment)) == moment.replace(microsecond=0)


conditions = st.builds(
    Condition,
    type=st.sampled_from(["Ready", "Issuing"]),
    status=st.sampled_from(["True", "False", "Unknown"]),
    reason=st.from_regex(r"[A-Z][A-Za-z0-9]{0,15}", fullmatch=True),
    message=st.text(max_size=40),
    observed_generation=st.none() | st.integers(min_value=0, max_value=2**40),
    last_transition_time=moments,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(conditions, max_size=5), conditions)
def test_set_condition_keeps_one_per_type_and_round_trips(
    existing: list[Condition], new: Condition
) -> None:
    before: list[dict[str, Any]] = []
    for cond in existing:
        before = set_condition(before, cond)
    after = set_condition(before, new)
    types = [c["type"] for c in after]
    assert len(types) == len(set(types))
    got = get_condition(after, new.type)
    assert got is not None
    assert (got.status, got.reason, got.message) == (new.status, new.reason, new.message)
    assert Condition.from_dict(got.to_dict()) == got
    assert set_condition(after, new) == after
