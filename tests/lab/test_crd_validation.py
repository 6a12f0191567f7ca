"""The CRDs in crds/, admitted by the lab's real kube-apiserver.

The API server compiles every CEL rule and estimates its cost when a CRD is applied, so
installing the three files is itself the first check. Then each manifest below is sent as a
server-side dry run, with strict field validation as `kubectl apply` does it: the invalid ones
must be refused with a message that tells the user what to change, the valid ones accepted, and
the defaults filled in. Status writes go through the status subresource and keep only the
fields the schema knows, plus the operator's free-form journal.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.examples import manifest_files

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
GROUP = "acmebridge.io"
VERSION = "v1alpha1"
PLURALS = {"Issuer": "issuers", "ClusterIssuer": "clusterissuers", "Certificate": "certificates"}
OMIT = object()  # a key given this value is removed from the manifest

Manifest = dict[str, Any]


# Fixtures


@pytest.fixture(scope="module")
def crds(kube: client.ApiClient) -> list[dict[str, Any]]:
    """Applies the three CRDs and waits until each is established and served.

    Server-side apply under the field manager `labctl up` uses, so that the two never
    conflict over who owns a field.
    """
    ext = client.ApiextensionsV1Api(kube)
    bodies = [yaml.safe_load(path.read_text()) for path in sorted((ROOT / "crds").glob("*.yaml"))]
    for body in bodies:
        name = body["metadata"]["name"]
        try:
            ext.patch_custom_resource_definition(
                name,
                body,
                field_manager="acmebridge-lab",
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except ApiException as e:
            raise AssertionError(f"the API server refused {name}: {reason(e)}") from e
    installed = []
    deadline = time.monotonic() + 60
    for body in bodies:
        name = body["metadata"]["name"]
        while True:
            crd = ext.read_custom_resource_definition(name).to_dict()
            conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"] or []}
            if conditions.get("Established") == "True" and served(kube, body):
                installed.append(crd)
                break
            assert time.monotonic() < deadline, f"{name} not established: {conditions}"
            time.sleep(0.2)
    return installed


def served(kube: client.ApiClient, crd: dict[str, Any]) -> bool:
    plural = crd["spec"]["names"]["plural"]
    try:
        client.CustomObjectsApi(kube).list_cluster_custom_object(GROUP, VERSION, plural, limit=1)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


@pytest.fixture(scope="module")
def ns(kube: client.ApiClient, crds: list[dict[str, Any]]) -> Iterator[str]:
    """One namespace for the module: dry runs leave nothing in it."""
    core = client.CoreV1Api(kube)
    name = f"crd-validation-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def test_the_api_server_accepts_the_three_crds(crds: list[dict[str, Any]]) -> None:
    names = sorted(crd["metadata"]["name"] for crd in crds)
    assert names == [f"{p}.{GROUP}" for p in ("certificates", "clusterissuers", "issuers")]
    for crd in crds:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["NamesAccepted"] == "True"
        assert "NonStructuralSchema" not in conditions


# Manifests


def reason(e: ApiException) -> str:
    try:
        return str(json.loads(e.body)["message"])
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}: {e.body}"


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is OMIT:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def issuer(kind: str = "Issuer", **acme: Any) -> Manifest:
    base = {
        "server": "https://ca.internal.example/acme/acme/directory",
        "privateKeySecretRef": {"name": "account"},
        "solvers": [{"http01": {"ingress": {}}}],
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "internal-ca"},
        "spec": {"acme": merged(base, acme)},
    }


def certificate(**spec: Any) -> Manifest:
    base = {
        "secretName": "web-tls",
        "issuerRef": {"name": "internal-ca"},
        "dnsNames": ["web.shop.example"],
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Certificate",
        "metadata": {"name": "web"},
        "spec": merged(base, spec),
    }


def rfc2136(**fields: Any) -> dict[str, Any]:
    return {"dns01": {"rfc2136": {"nameserver": "10.0.0.53:53", **fields}}}


TSIG = {
    "tsigKeyName": "acme",
    "tsigAlgorithm": "HMACSHA256",
    "tsigSecretSecretRef": {"name": "tsig", "key": "secret"},
}
PEM_B64 = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="


def create(
    kube: client.ApiClient, ns: str, manifest: Manifest, *, dry_run: bool = True
) -> dict[str, Any]:
    api = client.CustomObjectsApi(kube)
    plural = PLURALS[manifest["kind"]]
    options: dict[str, Any] = {"field_validation": "Strict"}
    if dry_run:
        options["dry_run"] = "All"
    if manifest["kind"] == "ClusterIssuer":
        if not dry_run:
            raise ValueError("only dry runs of cluster-scoped objects, to leave nothing behind")
        return api.create_cluster_custom_object(GROUP, VERSION, plural, manifest, **options)
    return api.create_namespaced_custom_object(GROUP, VERSION, ns, plural, manifest, **options)


def refusal(kube: client.ApiClient, ns: str, manifest: Manifest) -> str:
    try:
        create(kube, ns, manifest)
    except ApiException as e:
        assert e.status in (400, 422), reason(e)
        return reason(e)
    raise AssertionError("the API server accepted it")


# Refused at apply

REFUSED = [
    # Issuer and ClusterIssuer
    pytest.param(
        issuer(server=OMIT),
        ["spec.acme.server", "Required value"],
        id="an issuer without a server is refused",
    ),
    pytest.param(
        issuer(server="http://ca.internal.example/acme/acme/directory"),
        ["server must be the https:// URL of the ACME directory"],
        id="a plain http server is refused",
    ),
    pytest.param(
        issuer(server="ca.internal.example/acme"),
        ["server must be the https:// URL of the ACME directory"],
        id="a server without a scheme is refused",
    ),
    pytest.param(
        issuer(caBundle=PEM_B64, skipTLSVerify=True),
        ["caBundle and skipTLSVerify are mutually exclusive"],
        id="caBundle with skipTLSVerify is refused",
    ),
    pytest.param(
        issuer("ClusterIssuer", caBundle=PEM_B64, skipTLSVerify=True),
        ["caBundle and skipTLSVerify are mutually exclusive"],
        id="a cluster issuer with caBundle and skipTLSVerify is refused",
    ),
    pytest.param(
        issuer(caBundle="-----BEGIN CERTIFICATE-----"),
        ["spec.acme.caBundle", "byte"],
        id="a caBundle that is PEM rather than base64 is refused",
    ),
    pytest.param(
        issuer(privateKeySecretRef={"name": OMIT, "key": "tls.key"}),
        ["spec.acme.privateKeySecretRef.name", "Required value"],
        id="an account key reference without a Secret name is refused",
    ),
    pytest.param(
        issuer(email="PKI Team <pki@example.com>"),
        ["email must be a plain address"],
        id="an email with a display name is refused",
    ),
    pytest.param(
        issuer(externalAccountBinding={"keyID": "kid-1", "keySecretRef": {"name": "eab"}}),
        ["spec.acme.externalAccountBinding.keySecretRef.key", "Required value"],
        id="an external account binding without the Secret key is refused",
    ),
    pytest.param(
        issuer(
            externalAccountBinding={
                "keyID": "kid-1",
                "keySecretRef": {"name": "eab", "key": "secret"},
                "keyAlgorithm": "RS256",
            }
        ),
        ["keyAlgorithm", 'Unsupported value: "RS256"'],
        id="an external account binding with a non-HMAC algorithm is refused",
    ),
    pytest.param(
        issuer(solvers=[{"http01": {"ingress": {}}, **rfc2136()}]),
        ["each solver needs exactly one of http01 or dns01"],
        id="a solver with both http01 and dns01 is refused",
    ),
    pytest.param(
        issuer(solvers=[{"selector": {"dnsZones": ["shop.example"]}}]),
        ["each solver needs exactly one of http01 or dns01"],
        id="a solver with neither http01 nor dns01 is refused",
    ),
    pytest.param(
        issuer(solvers=[{"http01": {"ingress": {}}}] * 21),
        ["spec.acme.solvers", "20"],
        id="more than 20 solvers are refused",
    ),
    pytest.param(
        issuer(solvers=[{"http01": {"ingress": {"ingressClassName": "nginx", "class": "nginx"}}}]),
        ["set at most one of ingressClassName, class or name"],
        id="an ingress solver with both ingressClassName and class is refused",
    ),
    pytest.param(
        issuer(solvers=[{"http01": {"ingress": {"ingressClassName": "azure/app-gateway"}}}]),
        ["ingressClassName must be the name of an IngressClass"],
        id="an ingressClassName that cannot name an IngressClass is refused",
    ),
    pytest.param(
        issuer(solvers=[{"http01": {"ingress": {"serviceType": "LoadBalancer"}}}]),
        ["serviceType", 'Unsupported value: "LoadBalancer"'],
        id="a LoadBalancer solver service is refused",
    ),
    pytest.param(
        issuer(solvers=[rfc2136(tsigKeyName="acme")]),
        ["tsigKeyName and tsigSecretSecretRef go together"],
        id="a TSIG key name without its secret is refused",
    ),
    pytest.param(
        issuer(solvers=[rfc2136(**{k: v for k, v in TSIG.items() if k != "tsigAlgorithm"})]),
        ["tsigAlgorithm is required with a TSIG key"],
        id="a TSIG key without its algorithm is refused",
    ),
    pytest.param(
        issuer(solvers=[rfc2136(**{**TSIG, "tsigAlgorithm": "HMACSHA224"})]),
        ["tsigAlgorithm", 'Unsupported value: "HMACSHA224"'],
        id="an unknown TSIG algorithm is refused",
    ),
    pytest.param(
        issuer(solvers=[{"dns01": {"rfc2136": {"nameserver": "2001:db8::53:53"}}}]),
        ["nameserver must be host or host:port"],
        id="an IPv6 nameserver without brackets is refused",
    ),
    pytest.param(
        issuer(solvers=[rfc2136(protocol="tcp")]),
        ["protocol", 'Unsupported value: "tcp"', '"UDP", "TCP"'],
        id="a lower-case protocol is refused, as cert-manager's is case-sensitive",
    ),
    pytest.param(
        issuer(solvers=[{"dns01": {**rfc2136()["dns01"], "cnameStrategy": "Always"}}]),
        ["cnameStrategy", 'Unsupported value: "Always"', '"None", "Follow"'],
        id="an unknown cnameStrategy is refused",
    ),
    # Certificate
    pytest.param(
        certificate(secretName=OMIT),
        ["spec.secretName", "Required value"],
        id="a certificate without a secretName is refused",
    ),
    pytest.param(
        certificate(secretName="Web_TLS"),
        ["spec.secretName", "secretName must be a valid Secret name"],
        id="a secretName that is not a DNS-1123 subdomain is refused",
    ),
    pytest.param(
        certificate(issuerRef={"name": "internal-ca", "kind": "Vault"}),
        ["spec.issuerRef.kind", 'Unsupported value: "Vault"'],
        id="an issuer kind other than Issuer or ClusterIssuer is refused",
    ),
    pytest.param(
        certificate(issuerRef={"name": "internal-ca", "group": "cert-manager.io"}),
        ["spec.issuerRef.group", 'Unsupported value: "cert-manager.io"'],
        id="an issuer of another API group is refused",
    ),
    pytest.param(
        certificate(dnsNames=OMIT, uris=["spiffe://cluster.local/ns/shop/sa/web"]),
        ["set dnsNames or ipAddresses"],
        id="a certificate with neither dnsNames nor ipAddresses is refused",
    ),
    pytest.param(
        certificate(dnsNames=OMIT, commonName="web.shop.example"),
        ["set dnsNames or ipAddresses"],
        id="a commonName alone is refused",
    ),
    pytest.param(
        certificate(commonName="www.shop.example"),
        ["commonName must also be listed in dnsNames"],
        id="a commonName missing from dnsNames is refused",
    ),
    pytest.param(
        certificate(commonName="a" * 60 + ".shop.example", dnsNames=["a" * 60 + ".shop.example"]),
        ["spec.commonName", "64"],
        id="a commonName longer than 64 characters is refused",
    ),
    pytest.param(
        certificate(dnsNames=["web.*.shop.example"]),
        ['"web.*.shop.example" is not a valid DNS name'],
        id="a wildcard below the leftmost label is refused",
    ),
    pytest.param(
        certificate(dnsNames=["web*.shop.example"]),
        ['"web*.shop.example" is not a valid DNS name'],
        id="a partial wildcard label is refused",
    ),
    pytest.param(
        certificate(dnsNames=["Web.Shop.example"]),
        ['"Web.Shop.example" is not a valid DNS name', "lower-case"],
        id="an upper-case DNS name is refused",
    ),
    pytest.param(
        certificate(dnsNames=["web.shop.example."]),
        ['"web.shop.example." is not a valid DNS name'],
        id="a DNS name with a trailing dot is refused",
    ),
    pytest.param(
        certificate(dnsNames=["10.0.0.7"]),
        ['"10.0.0.7" is an IP address, not a DNS name', "ipAddresses"],
        id="an IP address among dnsNames is refused",
    ),
    pytest.param(
        certificate(ipAddresses=["10.0.0.256"]),
        ['"10.0.0.256" is not an IP address'],
        id="a malformed IPv4 address is refused",
    ),
    pytest.param(
        certificate(ipAddresses=["2001:0db8:0:0::7"]),
        ["canonical form"],
        id="a non-canonical IPv6 address is refused",
    ),
    pytest.param(
        certificate(uris=["/ns/shop/sa/web"]),
        ["absolute URI with a scheme"],
        id="a URI without a scheme is refused",
    ),
    pytest.param(
        certificate(dnsNames=[f"n{i}.shop.example" for i in range(101)]),
        ["spec.dnsNames", "100"],
        id="more than 100 dnsNames are refused",
    ),
    pytest.param(
        certificate(
            dnsNames=[f"n{i}.shop.example" for i in range(60)],
            ipAddresses=[f"10.0.0.{i}" for i in range(1, 42)],
        ),
        ["at most 100 names in total"],
        id="more than 100 names in total are refused",
    ),
    pytest.param(
        certificate(duration="90d"),
        ["duration must be a Go duration"],
        id="a duration in days is refused",
    ),
    pytest.param(
        certificate(duration="4m59s"),
        ["duration must be at least 5m"],
        id="a duration under five minutes is refused",
    ),
    pytest.param(
        certificate(renewBefore="720h", renewBeforePercentage=30),
        ["renewBefore and renewBeforePercentage are mutually exclusive"],
        id="renewBefore with renewBeforePercentage is refused",
    ),
    pytest.param(
        certificate(duration="24h", renewBefore="24h"),
        ["renewBefore must be shorter than duration"],
        id="renewBefore as long as duration is refused",
    ),
    pytest.param(
        certificate(renewBefore="30s"),
        ["renewBefore must be at least 1m"],
        id="renewBefore under a minute is refused",
    ),
    pytest.param(
        certificate(renewBeforePercentage=100),
        ["spec.renewBeforePercentage", "99"],
        id="renewBeforePercentage of 100 is refused",
    ),
    pytest.param(
        certificate(privateKey={"algorithm": "RSA", "size": 1024}),
        ["RSA keys must be 2048, 3072 or 4096 bits"],
        id="a 1024-bit RSA key is refused",
    ),
    pytest.param(
        certificate(privateKey={"algorithm": "ECDSA", "size": 2048}),
        ["ECDSA size is the curve"],
        id="an ECDSA key with an RSA size is refused",
    ),
    pytest.param(
        certificate(privateKey={"size": 4096}),
        ["ECDSA size is the curve"],
        id="an RSA size on the default ECDSA key is refused",
    ),
    pytest.param(
        certificate(privateKey={"algorithm": "Ed25519", "size": 256}),
        ["Ed25519 keys have a fixed size"],
        id="an Ed25519 key with a size is refused",
    ),
    pytest.param(
        certificate(privateKey={"algorithm": "DSA"}),
        ["spec.privateKey.algorithm", 'Unsupported value: "DSA"'],
        id="an unknown key algorithm is refused",
    ),
    pytest.param(
        certificate(usages=["server auth", "tls server"]),
        ["spec.usages", 'Unsupported value: "tls server"'],
        id="an unknown usage is refused",
    ),
    pytest.param(
        certificate(secretTemplate={"labels": {"acmebridge.io/certificate-name": "other"}}),
        ["may not use the acmebridge.io/ prefix"],
        id="a secret template that forges the operator's ownership label is refused",
    ),
    pytest.param(
        certificate(isCA=True),
        ['unknown field "spec.isCA"'],
        id="isCA is refused: ACME issues no CA certificates",
    ),
]


@pytest.mark.parametrize(("manifest", "fragments"), REFUSED)
def test_refused_at_apply(
    kube: client.ApiClient, ns: str, manifest: Manifest, fragments: list[str]
) -> None:
    message = refusal(kube, ns, manifest)
    for fragment in fragments:
        assert fragment in message


# Accepted

ACCEPTED = [
    pytest.param(issuer(), id="a minimal issuer"),
    pytest.param(issuer("ClusterIssuer"), id="a minimal cluster issuer"),
    pytest.param(issuer(email=""), id="an empty email, as charts often template it"),
    pytest.param(
        issuer(
            email="pki@example.com",
            caBundle=PEM_B64,
            issuingCABundle=PEM_B64,
            skipTLSVerify=False,
            profile="tlsserver",
            preferredChain="Internal Root CA",
            disableAccountKeyGeneration=True,
            externalAccountBinding={"keyID": "kid-1", "keySecretRef": {"name": "e", "key": "k"}},
            solvers=[
                {
                    "selector": {"dnsZones": ["shop.example"], "matchLabels": {"tier": "web"}},
                    "http01": {
                        "ingress": {
                            "name": "shop",
                            "serviceType": "NodePort",
                            "podTemplate": {
                                "metadata": {"labels": {"team": "shop"}},
                                "spec": {
                                    "nodeSelector": {"kubernetes.io/os": "linux"},
                                    "tolerations": [{"key": "edge", "operator": "Exists"}],
                                    "affinity": {"nodeAffinity": {}},
                                    "resources": {"requests": {"cpu": "10m", "memory": 1000}},
                                    "imagePullSecrets": [{"name": "mirror"}],
                                },
                            },
                            "ingressTemplate": {"metadata": {"annotations": {"a": "b"}}},
                        }
                    },
                },
                rfc2136(**TSIG),
                {"dns01": {"rfc2136": {"nameserver": "[2001:db8::53]:53"}}},
                {
                    "dns01": {
                        "cnameStrategy": "Follow",
                        "rfc2136": {"nameserver": "ns1.example.com", "protocol": "TCP", **TSIG},
                    }
                },
            ],
        ),
        id="an issuer using every field",
    ),
    pytest.param(certificate(dnsNames=["*.shop.example"]), id="a wildcard"),
    pytest.param(
        certificate(dnsNames=OMIT, ipAddresses=["10.0.0.7", "2001:db8::7"]),
        id="IP addresses alone",
    ),
    pytest.param(
        certificate(commonName="10.0.0.7", ipAddresses=["10.0.0.7"]),
        id="an IP address as commonName",
    ),
    pytest.param(certificate(duration="5m"), id="a five-minute certificate"),
    pytest.param(
        certificate(duration="1h", renewBeforePercentage=50), id="renewal at half the lifetime"
    ),
    pytest.param(certificate(duration="2160h", renewBefore="720h"), id="cert-manager's example"),
    pytest.param(certificate(privateKey={"algorithm": "RSA"}), id="RSA with the default size"),
    pytest.param(certificate(privateKey={"algorithm": "RSA", "size": 3072}), id="RSA 3072"),
    pytest.param(certificate(privateKey={"size": 521}), id="ECDSA P-521"),
    pytest.param(certificate(privateKey={"algorithm": "Ed25519"}), id="Ed25519"),
    pytest.param(
        certificate(
            dnsNames=[f"n{i}.shop.example" for i in range(50)],
            ipAddresses=[f"10.0.0.{i}" for i in range(1, 41)],
            uris=[f"spiffe://cluster.local/ns/shop/sa/w{i}" for i in range(5)],
            emailAddresses=[f"ops{i}@shop.example" for i in range(5)],
        ),
        id="100 names in total",
    ),
    pytest.param(
        certificate(
            commonName="web.shop.example",
            usages=["digital signature", "server auth", "client auth"],
            secretTemplate={"labels": {"team": "shop"}, "annotations": {"a.example/b": "c"}},
            subject={"organizations": ["Shop"], "countries": ["NL"], "serialNumber": "1"},
        ),
        id="a certificate using the remaining fields",
    ),
]


@pytest.mark.parametrize("manifest", ACCEPTED)
def test_accepted(kube: client.ApiClient, ns: str, manifest: Manifest) -> None:
    try:
        create(kube, ns, manifest)
    except ApiException as e:
        pytest.fail(f"refused: {reason(e)}")


def test_certificate_defaults(kube: client.ApiClient, ns: str) -> None:
    spec = create(kube, ns, certificate())["spec"]
    assert spec["issuerRef"] == {"name": "internal-ca", "kind": "Issuer", "group": GROUP}
    assert spec["privateKey"] == {
        "algorithm": "ECDSA",
        "encoding": "PKCS1",
        "rotationPolicy": "Always",
    }
    assert "usages" not in spec


def test_issuer_defaults(kube: client.ApiClient, ns: str) -> None:
    manifest = issuer(
        externalAccountBinding={"keyID": "kid-1", "keySecretRef": {"name": "e", "key": "k"}}
    )
    acme = create(kube, ns, manifest)["spec"]["acme"]
    assert acme["privateKeySecretRef"] == {"name": "account", "key": "tls.key"}
    assert acme["externalAccountBinding"]["keyAlgorithm"] == "HS256"
    assert acme["solvers"][0]["http01"]["ingress"] == {"serviceType": "ClusterIP"}


def test_dns01_defaults_are_udp_and_no_cname_following(kube: client.ApiClient, ns: str) -> None:
    dns01 = create(kube, ns, issuer(solvers=[rfc2136()]))["spec"]["acme"]["solvers"][0]["dns01"]
    assert dns01 == {
        "cnameStrategy": "None",
        "rfc2136": {"nameserver": "10.0.0.53:53", "protocol": "UDP"},
    }


def example_files() -> list[Any]:
    return [
        pytest.param(path, id=f"{path.relative_to(ROOT / 'examples')} is accepted")
        for path in manifest_files()
        if path.name != "00-namespace.yaml"
    ]


@pytest.mark.parametrize("path", example_files())
def test_examples_are_accepted(kube: client.ApiClient, lab: Any, ns: str, path: Path) -> None:
    values = {
        "PEBBLE_DIRECTORY_URL": lab.env["PEBBLE_DIRECTORY_URL"],
        "PEBBLE_TLS_CA_B64": base64.b64encode(Path(lab.env["PEBBLE_TLS_CA"]).read_bytes()).decode(),
        "PEBBLE_ROOT_B64": base64.b64encode(Path(lab.env["PEBBLE_ROOT"]).read_bytes()).decode(),
    }
    text = path.read_text()
    for variable, value in values.items():  # what `envsubst '${A} ${B}'` does
        text = text.replace(f"${{{variable}}}", value)
    for manifest in filter(None, yaml.safe_load_all(text)):
        if manifest["kind"] != "ClusterIssuer":
            manifest["metadata"]["namespace"] = ns
        try:
            create(kube, ns, manifest)
        except ApiException as e:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']} refused: {reason(e)}")


# Status and columns
#
# An operator may be running against the lab and writing the status of every Certificate and
# Issuer, these ones included. So status writes are dry runs of a freshly read object, retried
# on a conflict, and each test judges the object that its own write returned.


def stored(kube: client.ApiClient, ns: str, manifest: Manifest) -> Iterator[dict[str, Any]]:
    manifest["metadata"]["name"] += f"-{uuid.uuid4().hex[:6]}"
    obj = create(kube, ns, manifest, dry_run=False)
    yield obj
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(
        GROUP, VERSION, ns, PLURALS[obj["kind"]], obj["metadata"]["name"]
    )


@pytest.fixture
def stored_certificate(kube: client.ApiClient, ns: str) -> Iterator[dict[str, Any]]:
    yield from stored(kube, ns, certificate())


@pytest.fixture
def stored_issuer(kube: client.ApiClient, ns: str) -> Iterator[dict[str, Any]]:
    # No account key and none to be generated: an operator that sees it contacts no server.
    yield from stored(kube, ns, issuer(disableAccountKeyGeneration=True))


def write_status(
    kube: client.ApiClient,
    ns: str,
    obj: dict[str, Any],
    status: dict[str, Any],
    *,
    spec: dict[str, Any] | None = None,
    dry_run: bool = True,
) -> dict[str, Any]:
    """Replaces the status (and sends `spec`, which the status endpoint must ignore)."""
    api = client.CustomObjectsApi(kube)
    plural, name = PLURALS[obj["kind"]], obj["metadata"]["name"]
    options = {"dry_run": "All"} if dry_run else {}
    for _ in range(10):
        body = api.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        body["status"] = status
        if spec is not None:
            body["spec"] = spec
        try:
            return api.replace_namespaced_custom_object_status(
                GROUP, VERSION, ns, plural, name, body, **options
            )
        except ApiException as e:
            if e.status != 409:
                raise
    raise AssertionError(f"{name}: status kept changing under the test")


STATUS = {
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Issued",
            "message": "Certificate is up to date",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1,
        }
    ],
    "notBefore": "2026-01-01T00:00:00Z",
    "notAfter": "2026-04-01T00:00:00Z",
    "renewalTime": "2026-03-01T00:00:00Z",
    "revision": 1,
    "failedIssuanceAttempts": 0,
    "lastFailure": {"reason": "connection", "message": "no route", "specHash": "h"},
    "issued": {"specHash": "h", "serial": "0a", "caSource": "aia", "jitterSeconds": 42},
    "renewalInfo": {
        "certID": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        "windowStart": "2026-03-01T00:00:00Z",
        "windowEnd": "2026-03-02T00:00:00Z",
        "selectedTime": "2026-03-01T10:00:00Z",
        "recheckAt": "2026-01-01T06:00:00Z",
        "earlyRenewals": 0,
    },
    "order": {
        "url": "https://ca.example/acme/order/1",
        "state": "valid",
        "created": "2026-01-01T00:00:00Z",
        "authorizations": [
            {
                "url": "https://ca.example/acme/authz/1",
                "identifier": "web.shop.example",
                "challenge": {"type": "http-01", "presentedAt": "2026-01-01T00:00:01Z"},
            }
        ],
    },
}


def test_status_keeps_the_journal_and_drops_unknown_fields(
    kube: client.ApiClient, ns: str, stored_certificate: dict[str, Any]
) -> None:
    unknown = {"nextPrivateKeySecretName": "web-abcde", "acmebridge": {"jitterSeconds": 42}}
    written = write_status(kube, ns, stored_certificate, {**STATUS, **unknown})
    assert written["status"] == STATUS


ISSUER_STATUS = {
    "conditions": [{"type": "Ready", "status": "True", "reason": "AccountRegistered"}],
    "acme": {
        "uri": "https://ca.example/acme/acct/1",
        "lastRegisteredEmail": "pki@example.com",
        "lastPrivateKeyHash": "c2hhMjU2",
        "directory": {
            "ari": True,
            "profiles": ["tlsserver", "shortlived"],
            "profileDescriptions": {"tlsserver": "90 days", "shortlived": "6 days"},
            "externalAccountRequired": False,
            "termsOfService": "https://ca.example/tos",
            "website": "https://ca.example",
        },
    },
    "kopf": {"progress": {"register": {"started": "2026-01-01T00:00:00Z"}}},
}


def test_issuer_status_keeps_account_directory_and_kopf_progress(
    kube: client.ApiClient, ns: str, stored_issuer: dict[str, Any]
) -> None:
    status = {**ISSUER_STATUS, "register": {"result": "ok"}}  # a kopf handler result: pruned
    written = write_status(kube, ns, stored_issuer, status)
    assert written["status"] == ISSUER_STATUS


def test_status_with_a_malformed_time_is_refused(
    kube: client.ApiClient, ns: str, stored_certificate: dict[str, Any]
) -> None:
    with pytest.raises(ApiException) as refused:
        write_status(kube, ns, stored_certificate, {"notAfter": "next Tuesday"})
    assert "status.notAfter" in reason(refused.value)


def test_status_writes_do_not_change_the_spec(
    kube: client.ApiClient, ns: str, stored_certificate: dict[str, Any]
) -> None:
    spec = {**stored_certificate["spec"], "secretName": "other-tls"}
    written = write_status(kube, ns, stored_certificate, STATUS, spec=spec)
    assert written["spec"]["secretName"] == "web-tls"


def ready(obj: dict[str, Any], field: str) -> Any:
    conditions = obj.get("status", {}).get("conditions", [])
    return next((c.get(field) for c in conditions if c["type"] == "Ready"), None)


def test_kubectl_get_answers_the_usual_questions(
    kube: client.ApiClient, ns: str, stored_certificate: dict[str, Any]
) -> None:
    write_status(kube, ns, stored_certificate, STATUS, dry_run=False)
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/certificates/"
    request = kube.param_serialize(
        "GET",
        path + stored_certificate["metadata"]["name"],
        query_params=[("includeObject", "Object")],
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = kube.call_api(*request)
    assert response.status == 200
    table = json.loads(response.read())
    headers = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert headers == ["Name", "READY", "SECRET", "ISSUER", "NOT AFTER", "RENEWAL", "AGE"]
    (row,) = table["rows"]
    names = [c["name"] for c in table["columnDefinitions"]]
    cells = dict(zip(names, row["cells"], strict=True))
    assert (cells["SECRET"], cells["ISSUER"]) == ("web-tls", "internal-ca")
    # The row carries the object it was printed from: the columns must show its status, whether
    # that is still what this test wrote or already what an operator wrote since.
    obj = row["object"]
    status = obj.get("status", {})
    assert cells["READY"] == ready(obj, "status")
    assert cells["STATUS"] == ready(obj, "message")
    # Date columns come back as ages ("241d"): present exactly when the time is set.
    assert bool(cells["NOT AFTER"]) == ("notAfter" in status)
    assert bool(cells["RENEWAL"]) == ("renewalTime" in status)
