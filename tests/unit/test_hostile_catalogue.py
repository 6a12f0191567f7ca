"""The hostile-input catalogue against the operator's own parser, without a cluster.

The lab test (tests/lab/test_hostile.py) applies the catalogue to a real API server. Here each
case meets ``domain.spec`` directly, as it would on a cluster whose CRD is older than the
operator or was bypassed: what the schema refuses, the parser refuses too (unless the case says
the API server alone can), and a case the operator must answer at run time is refused by the
parser exactly when its reason is InvalidSpec.
"""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from acmebridge.domain.errors import SpecError
from acmebridge.domain.issuer_spec import AcmeIssuerSpec
from acmebridge.domain.spec import CertificateSpec
from tests.hostile import catalogue as cat

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
VALUES = cat.placeholder_values(
    server="https://127.0.0.1:14000/dir",
    tls_ca_pem=(FIXTURES / "root.pem").read_bytes(),
    issuing_root_pem=(FIXTURES / "old-root.pem").read_bytes(),
)


def parse(case: cat.Case) -> Any:
    manifest = cat.materialise(case.manifest, VALUES)
    if case.kind == "Certificate":
        return CertificateSpec.from_body(manifest["spec"])
    return AcmeIssuerSpec.from_body(manifest["spec"])


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id) for c in cat.REFUSED if c.parser_refuses]
)
def test_what_the_schema_refuses_the_parser_refuses(case: cat.Case) -> None:
    with pytest.raises(SpecError) as refused:
        parse(case)
    assert refused.value.reason == "InvalidSpec"
    assert refused.value.message.startswith("spec.")


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id) for c in cat.NOT_READY if c.reason == "InvalidSpec"]
)
def test_an_invalid_spec_at_run_time_is_the_parsers_finding(case: cat.Case) -> None:
    with pytest.raises(SpecError) as refused:
        parse(case)
    assert case.fragment in refused.value.message


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id) for c in cat.NOT_READY if c.reason != "InvalidSpec"]
)
def test_other_run_time_findings_are_beyond_the_spec(case: cat.Case) -> None:
    parse(case)  # the spec itself is fine: the problem is what it refers to


def test_the_catalogue_is_large_and_unambiguous() -> None:
    assert len(cat.CATALOGUE) >= 30
    assert len(cat.REFUSED) >= 10 and len(cat.NOT_READY) >= 10
    ids = Counter(c.id for c in cat.CATALOGUE)
    assert [i for i, n in ids.items() if n > 1] == []
    # Runtime cases share one namespace: each object needs a name of its own.
    objects = Counter((c.kind, c.name) for c in cat.NOT_READY)
    assert [o for o, n in objects.items() if n > 1] == []
    for case in cat.NOT_READY:
        assert case.reason and case.fragment


def test_a_bundle_of_151_certificates_is_one_too_many() -> None:
    bundle = cat.materialise({"b": cat.TLS_CA_X151}, VALUES)["b"]
    assert base64.b64decode(bundle).count(b"-----BEGIN CERTIFICATE-----") == 151
