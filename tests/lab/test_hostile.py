"""The hostile-input catalogue (tests/hostile/catalogue.py), applied to the lab in one go.

One namespace, one operator, one healthy Issuer and one control Certificate issued before any
hostile object arrives. Then every case is applied: the ``refused`` ones must bounce off the API
server, the ``not-ready`` ones must each end with Ready=False, their reason, an actionable
message and a Warning Event. Meanwhile the operator must keep serving: a second control
Certificate created after the whole catalogue must still be issued, no reconcile may crash, and
every Secret that existed before the catalogue must be byte-identical afterwards, resourceVersion
included (nothing deleted, emptied or overwritten).

The operator runs with an allow-list of Pebble's origin, so that the catalogue can show an ACME
server outside it being refused.

The catalogue is applied once, by the module fixture; each case is then one test that reads what
was observed, so a failure names the case and shows the object's status and Events.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from acmebridge.adapters.kube import Kube, core_path, ours_path
from acmebridge.domain.secret import PENDING_KEY_FOR_LABEL
from acmebridge.domain.solvers import SOLVER_LABEL
from tests.conftest import TEST_LABEL, namespace_name
from tests.hostile import catalogue as cat
from tests.hostile import leaks
from tests.lab.operator_proc import OperatorProcess, start_operator
from tests.lab.waits import condition, describe_events, get_object, wait_for

pytestmark = pytest.mark.lab

GROUP, VERSION = "acmebridge.io", "v1alpha1"
PLURALS = {"Issuer": "issuers", "Certificate": "certificates", "Secret": "secrets"}
ISSUE_TIMEOUT = 90
CATALOGUE_TIMEOUT = 120


@dataclass
class Run:
    """What applying the catalogue produced."""

    namespace: str
    operator: OperatorProcess
    refusals: dict[str, str] = field(default_factory=dict)  # case id -> API message
    accepted: set[str] = field(default_factory=set)  # refused cases the API server took
    objects: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # case id -> body
    events: list[dict[str, Any]] = field(default_factory=list)
    secrets_before: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _plural(manifest: dict[str, Any]) -> str:
    return PLURALS[manifest["kind"]]


def _path(manifest: dict[str, Any], namespace: str, *, name: bool = False) -> str:
    obj = manifest["metadata"]["name"] if name else None
    if manifest["kind"] == "Secret":
        return core_path("secrets", namespace, obj)
    return ours_path(_plural(manifest), namespace, obj)


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}: {e.body}"


def _create_strict(api: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    """Creates as `kubectl apply` does: strict field validation, unknown fields refused."""
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, _plural(manifest), manifest, field_validation="Strict"
    )


def _secrets(k: Kube, namespace: str) -> dict[str, dict[str, Any]]:
    return {s["metadata"]["name"]: s for s in k.list(core_path("secrets", namespace))}


def _settled(case: cat.Case, body: dict[str, Any] | None) -> bool:
    ready = condition(body, "Ready")
    return bool(
        ready
        and ready.get("status") == "False"
        and ready.get("reason") == case.reason
        and case.fragment in ready.get("message", "")
    )


def _is_ready(k: Kube, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    body = get_object(k.api, GROUP, VERSION, plural, namespace, name)
    ready = condition(body, "Ready")
    return body if ready and ready.get("status") == "True" else None


def _describe(k: Kube, body: dict[str, Any] | None) -> str:
    if body is None:
        return "the object does not exist"
    status = yaml.safe_dump(body.get("status") or {})
    return f"status:\n{status}events:\n{describe_events(k.api, body)}"


@pytest.fixture(scope="module")
def run(lab: Any, k: Kube) -> Iterator[Run]:
    started = time.monotonic()
    core = client.CoreV1Api(k.api)
    namespace = namespace_name("hostile-catalogue")
    core.create_namespace({"metadata": {"name": namespace, "labels": {TEST_LABEL: "true"}}})
    wait_for(
        lambda: k.get(core_path("serviceaccounts", namespace, "default")),
        timeout=30,
        describe=f"the default ServiceAccount in {namespace}",
    )
    origin = urlsplit(lab.env["PEBBLE_DIRECTORY_URL"])
    operator = start_operator(
        lab.env,
        name="operator-hostile",
        extra=[f"--namespace={namespace}", "--allowed-acme-server", f"https://{origin.netloc}/"],
    )
    result = Run(namespace=namespace, operator=operator)
    try:
        _apply_catalogue(lab, k, result)
        result.seconds = time.monotonic() - started
        print(
            f"catalogue of {len(cat.CATALOGUE)} cases applied and settled in {result.seconds:.1f}s"
        )
        yield result
    finally:
        operator.stop()
        print(f"operator log: {operator.log_path}")
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace, propagation_policy="Background")


def _apply_catalogue(lab: Any, k: Kube, run: Run) -> None:
    ns = run.namespace
    values = cat.placeholder_values(
        server=lab.env["PEBBLE_DIRECTORY_URL"],
        tls_ca_pem=Path(lab.env["PEBBLE_TLS_CA"]).read_bytes(),
        issuing_root_pem=Path(lab.env["PEBBLE_ROOT"]).read_bytes(),
    )

    # The healthy baseline, issued before anything hostile exists.
    k.create(_path(cat.good_issuer(), ns), cat.materialise(cat.good_issuer(), values))
    wait_for(
        lambda: _is_ready(k, ns, "issuers", cat.GOOD_ISSUER),
        timeout=ISSUE_TIMEOUT,
        describe=lambda: _describe(
            k, get_object(k.api, GROUP, VERSION, "issuers", ns, cat.GOOD_ISSUER)
        ),
    )
    k.create(_path(cat.control_certificate(), ns), cat.control_certificate())
    wait_for(
        lambda: _is_ready(k, ns, "certificates", cat.CONTROL),
        timeout=ISSUE_TIMEOUT,
        describe=lambda: _describe(
            k, get_object(k.api, GROUP, VERSION, "certificates", ns, cat.CONTROL)
        ),
    )

    # The control's issuance is over only when its pending key and solver objects are gone:
    # the operator deletes them just after Ready, and they must not count as pre-existing.
    wait_for(
        lambda: (
            not k.list(core_path("secrets", ns), label_selector=PENDING_KEY_FOR_LABEL)
            and not k.list(core_path("pods", ns), label_selector=SOLVER_LABEL)
        ),
        timeout=30,
        describe="the control's pending key and solver Pod to be cleaned up",
    )

    # What the cases need to exist first: Secrets before anything that could refer to them.
    setup = {(m["kind"], m["metadata"]["name"]): m for case in cat.CATALOGUE for m in case.setup}
    for manifest in sorted(setup.values(), key=lambda m: m["kind"] != "Secret"):
        k.create(_path(manifest, ns), cat.materialise(manifest, values))
    run.secrets_before = _secrets(k, ns)

    # The catalogue itself.
    for case in cat.CATALOGUE:
        manifest = cat.materialise(case.manifest, values)
        try:
            _create_strict(k.api, ns, manifest)
        except ApiException as e:
            if case.outcome != "refused" or e.status not in (400, 422):
                raise
            run.refusals[case.id] = _message(e)
        else:
            if case.outcome == "refused":
                run.accepted.add(case.id)
    for manifest in [cat.control_certificate(cat.LATE_CONTROL), *cat.AT_THE_LIMITS]:
        k.create(_path(manifest, ns), cat.materialise(manifest, values))

    # Wait until every runtime case has its answer, and the late control its certificate.
    pending = list(cat.NOT_READY)

    def settled() -> bool:
        for case in list(pending):
            body = get_object(k.api, GROUP, VERSION, _plural(case.manifest), ns, case.name)
            run.objects[case.id] = body
            if _settled(case, body):
                pending.remove(case)
        issued = [
            _is_ready(k, ns, _plural(m), m["metadata"]["name"])
            for m in [cat.control_certificate(cat.LATE_CONTROL), *cat.AT_THE_LIMITS]
        ]
        return not pending and all(issued)

    with contextlib.suppress(AssertionError):  # each case's own test reports what is missing
        wait_for(
            settled,
            timeout=CATALOGUE_TIMEOUT,
            interval=0.5,
            describe=lambda: ", ".join(c.id for c in pending),
        )
    # Events are posted right after the condition: give the last ones a moment to arrive.
    settled_cases = [c for c in cat.NOT_READY if c not in pending]
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: all(_event_for(c, _events(k, ns)) for c in settled_cases),
            timeout=10,
            interval=0.5,
            describe="the Events of the settled cases",
        )
    run.events = _events(k, ns)
    run.secrets_after = _secrets(k, ns)


def _events(k: Kube, namespace: str) -> list[dict[str, Any]]:
    return k.list(core_path("events", namespace))


def _event_for(case: cat.Case, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    for e in events:
        involved = e.get("involvedObject") or {}
        if (
            involved.get("kind") == case.kind
            and involved.get("name") == case.name
            and e.get("type") == "Warning"
            and e.get("reason") == case.expected_event_reason
        ):
            return e
    return None


# --- each case -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in cat.REFUSED])
def test_refused_when_applied(run: Run, case: cat.Case) -> None:
    assert case.id not in run.accepted, "the API server accepted it"
    message = run.refusals[case.id]
    assert case.fragment in message, message


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in cat.NOT_READY])
def test_not_ready_with_a_reason_and_an_event(k: Kube, run: Run, case: cat.Case) -> None:
    body = run.objects.get(case.id)
    assert _settled(case, body), (
        f"expected Ready=False {case.reason} with {case.fragment!r}; {_describe(k, body)}"
    )
    assert _event_for(case, run.events) is not None, (
        f"no Warning Event {case.expected_event_reason} for {case.kind} {case.name}; "
        f"{_describe(k, body)}"
    )


# --- the operator kept serving, and touched nothing it does not own --------------------------


def test_the_operator_kept_issuing_after_the_whole_catalogue(k: Kube, run: Run) -> None:
    for name in (cat.CONTROL, cat.LATE_CONTROL):
        body = _is_ready(k, run.namespace, "certificates", name)
        assert body is not None, _describe(
            k, get_object(k.api, GROUP, VERSION, "certificates", run.namespace, name)
        )
        secret = k.get(core_path("secrets", run.namespace, f"{name}-tls"))
        assert secret is not None and secret["type"] == "kubernetes.io/tls"
        assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE")
    assert run.operator.alive()


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(m, id=f"a {m['kind']} named with {len(m['metadata']['name'])} characters")
        for m in cat.AT_THE_LIMITS
    ],
)
def test_valid_names_at_their_limits_work(k: Kube, run: Run, manifest: dict[str, Any]) -> None:
    name = manifest["metadata"]["name"]
    body = _is_ready(k, run.namespace, _plural(manifest), name)
    assert body is not None, _describe(
        k, get_object(k.api, GROUP, VERSION, _plural(manifest), run.namespace, name)
    )


def test_every_secret_that_existed_before_is_byte_identical(run: Run) -> None:
    assert run.secrets_before, "the baseline holds at least the control and account Secrets"
    for name, before in run.secrets_before.items():
        after = run.secrets_after.get(name)
        assert after is not None, f"Secret {name} was deleted"
        for part in ("type", "data"):
            assert after.get(part) == before.get(part), f"Secret {name}: {part} changed"
        for part in ("labels", "annotations", "resourceVersion", "uid"):
            assert after["metadata"].get(part) == before["metadata"].get(part), (
                f"Secret {name}: metadata.{part} changed"
            )


def test_no_reconcile_crashed(run: Run) -> None:
    """Every hostile input gets a condition; none may end in an exception and a retry loop."""
    log = run.operator.log_text()
    crashes = [line for line in log.splitlines() if "Traceback" in line or " ERROR " in line]
    assert not crashes, "\n".join(crashes[:20])


def test_no_key_material_in_statuses_events_or_logs(k: Kube, run: Run) -> None:
    needles = leaks.generic_needles()
    for name, s in run.secrets_after.items():
        key = (s.get("data") or {}).get("tls.key")
        if not key:
            continue
        pem = base64.b64decode(key)
        if b"PRIVATE KEY" in pem:
            needles.update(leaks.key_needles(f"Secret {name} tls.key", pem))
    texts = [("the operator's log", run.operator.log_text())]
    texts += [(f"Event {e['metadata']['name']}", json.dumps(e)) for e in run.events]
    # Metadata and status only: a spec holds what the user wrote (one case puts a private key
    # into a caBundle on purpose); what matters is whether the operator repeated it anywhere.
    for plural in ("certificates", "issuers"):
        for obj in k.list(ours_path(plural, run.namespace)):
            written = {"metadata": obj["metadata"], "status": obj.get("status")}
            texts.append((f"{plural}/{obj['metadata']['name']}", json.dumps(written)))
    found = leaks.scan_all(texts, needles)
    assert not found, "\n".join(str(f) for f in found[:10])
