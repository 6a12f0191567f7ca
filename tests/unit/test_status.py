"""The Certificate's typed status: it reads what it writes, tolerates what it cannot read, builds
merge patches that leave nothing stale behind, and every field it writes is in the CRD schema
(so `kubectl explain certificate.status` documents it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from acmebridge.domain.journal import AuthorizationRecord, ChallengeRecord, OrderJournal
from acmebridge.domain.status import (
    CertificateStatus,
    Issued,
    LastFailure,
    RenewalInfoRecord,
    StatusPatch,
)

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

RECORD = RenewalInfoRecord(
    cert_id="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
    window_start=NOW,
    window_end=NOW + timedelta(days=1),
    selected_time=NOW + timedelta(hours=3),
    recheck_at=NOW + timedelta(hours=6),
    explanation_url="https://ca.example/why",
    early_renewals=2,
    guarded=True,
)
JOURNAL = OrderJournal(
    url="https://ca.example/order/1",
    state="pending",
    spec_hash="h",
    revision=3,
    account_uri="https://ca.example/acct/1",
    created=NOW,
    authorizations=(
        AuthorizationRecord(
            url="https://ca.example/authz/1",
            identifier="*.shop.example",
            wildcard=True,
            challenge=ChallengeRecord(
                type="dns-01",
                url="https://ca.example/chall/1",
                token="tok",
                solver_index=1,
                presented_at=NOW,
                answered_at=NOW + timedelta(seconds=1),
                solver_uid="pod-uid",
                record_name="_acme-challenge.shop.example",
                record_zone="shop.example.",
                record_server="10.0.0.53:53",
                record_value="LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0",
                error="no TXT record",
            ),
        ),
    ),
    finalize_url="https://ca.example/finalize/1",
    certificate_url="https://ca.example/cert/1",
    expires=NOW + timedelta(days=7),
    replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
    profile="tlsserver",
    error="boom",
    pending_key_uid="key-uid",
    finalized_at=NOW + timedelta(seconds=2),
)


def full_patch() -> StatusPatch:
    patch = StatusPatch(CertificateStatus(), generation=4)
    patch.set(
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        renewal_time=NOW + timedelta(days=60),
        revision=3,
        failed_issuance_attempts=2,
        last_failure_time=NOW,
        issuing_since=NOW,
    )
    patch.set_last_failure(LastFailure("connection", "refused", "h", 30))
    patch.set_issued(Issued("h", "0a", "aia", "because", 42))
    patch.set_renewal_info(RECORD)
    patch.set_order(JOURNAL)
    patch.condition("Ready", "False", "Issuing", "on its way", now=NOW)
    return patch


def test_the_status_reads_back_what_the_patch_wrote() -> None:
    patch = full_patch()
    read = CertificateStatus.from_json(patch.body)
    assert read == patch.current
    assert read.order == JOURNAL and read.renewal_info == RECORD
    assert read.condition("Ready") is not None


def _schema_paths(node: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, child in (node.get("properties") or {}).items():
        path = f"{prefix}.{key}"
        paths.add(path)
        paths |= _schema_paths(child, path)
        if child.get("type") == "array":
            paths |= _schema_paths(child["items"], path + "[]")
    return paths


def _value_paths(value: Any, prefix: str = "") -> set[str]:
    paths = set()
    if isinstance(value, dict):
        for key, child in value.items():
            paths.add(f"{prefix}.{key}")
            paths |= _value_paths(child, f"{prefix}.{key}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                paths |= _value_paths(item, prefix + "[]")
    return paths


def test_every_field_written_is_in_the_crd_schema() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "certificates.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    missing = _value_paths(full_patch().body) - _schema_paths(schema)
    assert missing == set()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"renewalInfo": {"certID": "x"}}, id="a renewal record without its times"),
        pytest.param({"lastFailure": {"message": "m"}}, id="a failure without reason or spec"),
        pytest.param({"revision": "three", "notAfter": "soon"}, id="values of the wrong type"),
        pytest.param({"conditions": "Ready"}, id="conditions that are not a list"),
        pytest.param(None, id="no status at all"),
    ],
)
def test_an_unreadable_field_reads_as_absent(raw: Any) -> None:
    status = CertificateStatus.from_json(raw)
    assert status.renewal_info is None and status.last_failure is None
    assert status.revision == 0 and status.not_after is None
    assert status.conditions == ()


def test_a_cleared_section_nulls_every_key_so_nothing_stale_survives_a_merge() -> None:
    patch = StatusPatch(CertificateStatus(), generation=1)
    patch.set_issued(Issued(spec_hash="h"))
    assert patch.body["issued"] == {
        "specHash": "h",
        "serial": None,
        "caSource": None,
        "caOmittedReason": None,
        "jitterSeconds": None,
    }
    patch.set_renewal_info(None)
    patch.set_order(None)
    assert patch.body["renewalInfo"] is None and patch.body["order"] is None


@pytest.mark.parametrize(
    ("stored", "changes"),
    [
        pytest.param({"revision": 3}, False, id="the same value is no change"),
        pytest.param({"revision": 2}, True, id="another value is"),
        pytest.param({}, True, id="a value where there was none is"),
    ],
)
def test_a_patch_knows_whether_it_changes_anything(stored: dict[str, Any], changes: bool) -> None:
    patch = StatusPatch(CertificateStatus.from_json(stored), generation=1)
    patch.set(revision=3)
    assert patch.changes(stored) is changes


def test_a_condition_that_only_moves_in_time_is_no_change() -> None:
    patch = StatusPatch(CertificateStatus(), generation=1)
    patch.condition("Ready", "True", "Ready", "ok", now=NOW)
    stored = dict(patch.body)
    again = StatusPatch(CertificateStatus.from_json(stored), generation=1)
    again.condition("Ready", "True", "Ready", "ok", now=NOW + timedelta(hours=1))
    assert not again.changes(stored)
