"""Properties of the pure decisions that hostile or broken state reaches: solver selection, the
ACME journal read back from status, the re-issue trigger, and whose a Secret is.

Each of these reads something a user (or anyone who can write status or Secrets) controls. No
input may crash them, since a crash loops a reconcile instead of telling the user what is wrong,
and each keeps a promise the rest of the operator relies on: a wildcard never gets an HTTP-01
solver, an unreadable journal is dropped rather than trusted, the trigger fires when the Secret
is not fine, and only a Secret carrying the Certificate's label *and* UID is ever its own.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from acmebridge.domain import secret as s
from acmebridge.domain.issuer_spec import Http01IngressSolver, Rfc2136Solver, Solver, SolverSelector
from acmebridge.domain.journal import (
    AuthorizationRecord,
    ChallengeRecord,
    OrderJournal,
    journal_usable,
)
from acmebridge.domain.solvers import select_solver
from acmebridge.domain.trigger import SecretState, TriggerInputs, evaluate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
LEAF_PEM = (FIXTURES / "leaf.pem").read_bytes()
INTERMEDIATE_PEM = (FIXTURES / "intermediate.pem").read_bytes()
KEY_PEM = (FIXTURES / "leaf-key.pem").read_bytes()
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


# --- solver selection ------------------------------------------------------------------------

ZONES = ["example.com", "a.example.com", "b.a.example.com", "other.net"]
NAMES = ["example.com", "a.example.com", "x.a.example.com", "b.a.example.com", "y.other.net"]
LABELS = st.dictionaries(st.sampled_from(["tier", "team"]), st.sampled_from(["web", "db"]))

selectors = st.builds(
    SolverSelector,
    # A wildcard is listed as `*.name` in dnsNames, as in cert-manager.
    dns_names=st.lists(
        st.sampled_from(NAMES + [f"*.{n}" for n in NAMES]), max_size=2, unique=True
    ).map(tuple),
    dns_zones=st.lists(st.sampled_from(ZONES), max_size=2, unique=True).map(tuple),
    match_labels=LABELS,
)
solvers = st.builds(
    Solver,
    selector=selectors,
    http01=st.none() | st.just(Http01IngressSolver(ingress_class_name="lab")),
    dns01=st.none() | st.just(Rfc2136Solver(nameserver="10.0.0.53:53")),
)
identifiers = st.one_of(
    st.tuples(st.just("dns"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("ip"), st.sampled_from(["10.0.0.1", "2001:db8::1"]), st.just(False)),
)


def _in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


def _eligible(solver: Solver, kind: str, name: str, wildcard: bool, labels: dict[str, str]) -> bool:
    """The selection rules, stated independently of the implementation."""
    if solver.http01 is None and solver.dns01 is None:
        return False
    if wildcard and solver.dns01 is None:
        return False  # RFC 8555 §7.1.3: a wildcard is proven with DNS-01 only
    if kind == "ip" and solver.http01 is None:
        return False  # RFC 8738 §7: an IP address cannot be proven with DNS-01
    sel = solver.selector
    if any(labels.get(k) != v for k, v in sel.match_labels.items()):
        return False
    if sel.dns_names or sel.dns_zones:
        zoned = kind == "dns" and any(_in_zone(name, z) for z in sel.dns_zones)
        return (f"*.{name}" if wildcard else name) in sel.dns_names or zoned
    return True


@given(st.lists(solvers, max_size=6), identifiers, LABELS)
def test_a_solver_is_chosen_exactly_when_one_may_take_the_identifier(
    candidates: list[Solver], identifier: tuple[str, str, bool], labels: dict[str, str]
) -> None:
    kind, name, wildcard = identifier
    chosen = select_solver(
        candidates,
        identifier_type=kind,
        identifier=name,
        wildcard=wildcard,
        certificate_labels=labels,
    )
    eligible = [i for i, c in enumerate(candidates) if _eligible(c, kind, name, wildcard, labels)]
    if chosen is None:
        assert not eligible
        return
    assert chosen.index in eligible
    assert chosen.solver is candidates[chosen.index]
    if wildcard:
        assert chosen.solver.dns01 is not None
    if kind == "ip":
        assert chosen.solver.http01 is not None


@given(st.lists(solvers, min_size=1, max_size=6), st.sampled_from(NAMES), LABELS)
def test_the_most_specific_selector_wins(
    candidates: list[Solver], name: str, labels: dict[str, str]
) -> None:
    chosen = select_solver(
        candidates,
        identifier_type="dns",
        identifier=name,
        wildcard=False,
        certificate_labels=labels,
    )
    if chosen is None:
        return
    eligible = [c for c in candidates if _eligible(c, "dns", name, False, labels)]
    if name in chosen.solver.selector.dns_names:
        return  # an exact name is the most specific there is
    assert not any(name in c.selector.dns_names for c in eligible)

    def zone_length(c: Solver) -> int:
        return max((len(z) for z in c.selector.dns_zones if _in_zone(name, z)), default=0)

    assert zone_length(chosen.solver) == max(zone_length(c) for c in eligible)


@given(st.lists(solvers, max_size=6), identifiers, LABELS)
def test_a_catch_all_solver_added_last_never_takes_over(
    candidates: list[Solver], identifier: tuple[str, str, bool], labels: dict[str, str]
) -> None:
    kind, name, wildcard = identifier
    catch_all = Solver(
        http01=Http01IngressSolver(ingress_class_name="lab"),
        dns01=Rfc2136Solver(nameserver="10.0.0.53:53"),
    )

    def choose(options: list[Solver]) -> int | None:
        chosen = select_solver(
            options,
            identifier_type=kind,
            identifier=name,
            wildcard=wildcard,
            certificate_labels=labels,
        )
        return None if chosen is None else chosen.index

    before = choose(candidates)
    after = choose([*candidates, catch_all])
    assert after == (len(candidates) if before is None else before)


# --- the ACME journal in status --------------------------------------------------------------

whole_seconds = moments.map(lambda t: t.replace(microsecond=0))
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789:/._-", min_size=1, max_size=24)
challenges = st.builds(
    ChallengeRecord,
    type=st.sampled_from(["http-01", "dns-01"]),
    url=words,
    token=words,
    state=st.sampled_from(["pending", "processing", "valid", "invalid"]),
    solver_index=st.none() | st.integers(min_value=0, max_value=19),
    presented_at=st.none() | whole_seconds,
    answered_at=st.none() | whole_seconds,
    solver_uid=st.none() | words,
    record_name=st.none() | words,
    error=st.none() | words,
)
authorizations = st.builds(
    AuthorizationRecord,
    url=words,
    identifier=words,
    identifier_type=st.sampled_from(["dns", "ip"]),
    wildcard=st.booleans(),
    state=st.sampled_from(["pending", "valid", "invalid"]),
    challenge=st.none() | challenges,
)
journals = st.builds(
    OrderJournal,
    url=words,
    state=st.sampled_from(["pending", "ready", "processing", "valid", "invalid"]),
    spec_hash=words,
    revision=st.integers(min_value=0, max_value=2**31),
    account_uri=words,
    created=whole_seconds,
    authorizations=st.lists(authorizations, max_size=3).map(tuple),
    finalize_url=st.just("") | words,
    certificate_url=st.just("") | words,
    expires=st.none() | whole_seconds,
    replaces=st.none() | words,
    profile=st.none() | words,
    error=st.none() | words,
)


@given(journals)
def test_a_journal_survives_status_and_json(journal: OrderJournal) -> None:
    stored = json.loads(json.dumps(journal.to_status()))
    assert OrderJournal.from_status(stored) == journal


@given(json_values)
def test_any_json_in_status_is_a_journal_or_nothing(raw: Any) -> None:
    journal = OrderJournal.from_status(raw)
    assert journal is None or isinstance(journal, OrderJournal)


@settings(max_examples=300)
@given(
    journals,
    st.sampled_from(
        ["url", "state", "specHash", "revision", "created", "authorizations", "expires", "error"]
    ),
    # What json.loads makes of 1e999, -1e999 and NaN, next to everything else.
    st.sampled_from([float("inf"), float("-inf"), float("nan")]) | json_values,
)
def test_a_hand_edited_journal_field_never_crashes_the_reader(
    journal: OrderJournal, key: str, value: Any
) -> None:
    stored = journal.to_status()
    stored[key] = value
    read = OrderJournal.from_status(stored)
    assert read is None or isinstance(read, OrderJournal)


@given(
    st.none() | journals,
    words,
    words,
    moments,
)
def test_a_journal_is_used_only_for_its_own_spec_and_account(
    journal: OrderJournal | None, spec_hash: str, account: str, now: datetime
) -> None:
    usable = journal_usable(journal, spec_hash=spec_hash, account_uri=account, now=now)
    if usable:
        assert journal is not None
        assert journal.spec_hash == spec_hash and journal.account_uri == account
        # An expired order is kept only to download (valid) or to explain (invalid).
        expired = journal.expires is not None and journal.expires <= now
        assert not expired or journal.state in ("valid", "invalid")


# --- the re-issue trigger --------------------------------------------------------------------

REASONS = {
    "DoesNotExist",
    "MissingData",
    "InvalidCertificate",
    "InvalidKeyPair",
    "SecretMismatch",
    "IncorrectIssuer",
    "SpecChanged",
    "ManuallyTriggered",
    "Expired",
    "Renewing",
}
secret_states = st.builds(
    SecretState,
    exists=st.booleans(),
    has_cert=st.booleans(),
    has_key=st.booleans(),
    cert_error=st.none() | st.text(max_size=10),
    key_error=st.none() | st.text(max_size=10),
    key_matches_cert=st.booleans(),
    key_matches_spec=st.booleans(),
    names_mismatch=st.none() | st.text(max_size=10),
    not_after=st.none() | moments,
    issuer_annotation_matches=st.booleans(),
)
trigger_inputs = st.builds(
    TriggerInputs,
    secret=secret_states,
    spec_hash=st.sampled_from(["h1", "h2"]),
    issued_spec_hash=st.none() | st.sampled_from(["h1", "h2"]),
    renewal_time=st.none() | moments,
    manual_trigger=st.booleans(),
)


def _fine(i: TriggerInputs, now: datetime) -> bool:
    """The Secret needs nothing: the trigger's promise, stated independently."""
    sec = i.secret
    return (
        sec.exists
        and sec.has_cert
        and sec.has_key
        and not sec.cert_error
        and not sec.key_error
        and sec.key_matches_cert
        and sec.key_matches_spec
        and not sec.names_mismatch
        and sec.issuer_annotation_matches
        and (i.issued_spec_hash is None or i.issued_spec_hash == i.spec_hash)
        and not i.manual_trigger
        and (sec.not_after is None or sec.not_after > now)
        and (i.renewal_time is None or i.renewal_time > now)
    )


@given(trigger_inputs, moments)
def test_the_trigger_fires_exactly_when_the_secret_is_not_fine(
    inputs: TriggerInputs, now: datetime
) -> None:
    verdict = evaluate(inputs, now=now)
    assert (verdict is None) == _fine(inputs, now)
    if verdict is not None:
        assert verdict.reason in REASONS and verdict.message
    if not inputs.secret.exists:
        assert verdict is not None and verdict.reason == "DoesNotExist"


@given(
    trigger_inputs, moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=9999))
)
def test_waiting_never_cancels_a_reissue(
    inputs: TriggerInputs, now: datetime, wait: timedelta
) -> None:
    if evaluate(inputs, now=now) is not None:
        assert evaluate(inputs, now=now + wait) is not None


# --- whose a Secret is -----------------------------------------------------------------------

UID = "0b9a7c5e-1111-4e5f-9a0b-123456789abc"
object_names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,250}[a-z0-9])?", fullmatch=True).filter(
    lambda n: ".." not in n and ".-" not in n and "-." not in n
)
uids = st.uuids().map(str)
templates = st.dictionaries(
    st.sampled_from(
        [
            "team",
            "app.example/tier",
            s.CERTIFICATE_NAME_LABEL,
            s.CERTIFICATE_UID_ANNOTATION,
            s.PENDING_KEY_FOR_LABEL,
            s.ACCOUNT_KEY_LABEL,
        ]
    ),
    st.sampled_from(["x", "web", UID, "Issuer.ca"]),
)


# Metadata as the API server might hold it after anyone edited it: our keys with any values,
# and junk where maps and lists should be.
metadata_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=12),
        "labels": templates | json_values,
        "annotations": templates | json_values,
        "ownerReferences": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "apiVersion": st.sampled_from(["acmebridge.io/v1alpha1", "v1"]) | json_values,
                    "kind": st.sampled_from(["Certificate", "Issuer"]) | json_values,
                    "uid": st.just(UID) | json_values,
                    "controller": json_values,
                },
            )
            | json_values,
            max_size=3,
        )
        | json_values,
    },
)


@settings(max_examples=1000)
@given(
    st.none() | metadata_like | st.dictionaries(st.text(max_size=12), json_values),
    st.sampled_from(["web", "x"]) | object_names,  # names the template values can match
)
def test_any_metadata_is_absent_ours_or_foreign(metadata: Any, name: str) -> None:
    own = s.ownership(metadata, certificate_name=name, certificate_uid=UID)
    assert (own is s.Ownership.ABSENT) == (metadata is None)
    if own is s.Ownership.OURS:
        assert metadata["labels"][s.CERTIFICATE_NAME_LABEL] == s.certificate_name_label(name)
        assert metadata["annotations"][s.CERTIFICATE_UID_ANNOTATION] == UID
    if own is s.Ownership.FOREIGN:
        assert s.conflict_message(metadata, certificate_name=name, certificate_uid=UID)
    assert s.is_pending_key_secret_for(metadata, UID) in (True, False)


@settings(max_examples=60)
@given(object_names, uids, object_names, uids, templates, templates)
def test_only_the_certificate_a_secret_was_written_for_owns_it(
    name: str,
    uid: str,
    other_name: str,
    other_uid: str,
    labels: dict[str, str],
    annotations: dict[str, str],
) -> None:
    body = s.build_tls_secret(
        name="web-tls",
        namespace="shop",
        certificate_name=name,
        certificate_uid=uid,
        issuer_name="ca",
        issuer_kind="Issuer",
        chain_pem=LEAF_PEM + INTERMEDIATE_PEM,
        key_pem=KEY_PEM,
        ca_pem=None,
        template_labels=labels,
        template_annotations=annotations,
    )
    metadata = body["metadata"]
    assert s.ownership(metadata, certificate_name=name, certificate_uid=uid) is s.Ownership.OURS
    if other_uid != uid:
        assert s.ownership(metadata, certificate_name=name, certificate_uid=other_uid) is (
            s.Ownership.FOREIGN
        )
    if other_name != name:
        assert s.ownership(metadata, certificate_name=other_name, certificate_uid=uid) is (
            s.Ownership.FOREIGN
        )
    for value in metadata["labels"].values():
        assert len(value) <= 63 and LABEL_VALUE.fullmatch(value)


@given(object_names, uids, object_names, uids)
def test_a_pending_key_secret_is_never_a_tls_secret(
    name: str, uid: str, other_name: str, other_uid: str
) -> None:
    body = s.pending_key_secret(
        certificate_name=name, certificate_uid=uid, namespace="shop", key_pem=KEY_PEM
    )
    metadata = {**body["metadata"], "name": "x"}
    for who, whose in ((name, uid), (other_name, other_uid)):
        assert s.ownership(metadata, certificate_name=who, certificate_uid=whose) is (
            s.Ownership.FOREIGN
        )
    assert s.is_pending_key_secret_for(metadata, uid)
    assert not s.is_pending_key_secret_for(metadata, other_uid) or other_uid == uid


@given(object_names, object_names)
def test_label_values_of_object_names_are_valid_and_distinct(first: str, second: str) -> None:
    a, b = s.label_value(first), s.label_value(second)
    assert (a == b) == (first == second)
    for value in (a, b):
        assert len(value) <= 63 and LABEL_VALUE.fullmatch(value)
