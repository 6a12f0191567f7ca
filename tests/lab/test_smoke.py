"""The lab behaves like a cluster and a public ACME CA where acmebridge relies on it.

Each test checks one thing the operator's own tests take for granted: objects round-trip between
kubectl and the Python client, RBAC denies and then allows a ServiceAccount, owner references are
garbage-collected, Pebble issues a certificate after validating HTTP-01 through the ingress
stand-in and a Pod run by the node agent, and a second `labctl up` reuses the running lab.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import josepy
import pytest
from acme import challenges, messages
from acme import client as acme_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import PolicyBuilder, Store
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.lab import labproc
from tests.lab.labenv import Lab
from tests.lab.waits import get_object, wait_for

ROOT = Path(__file__).resolve().parents[2]


# --- kubectl and the Python client see the same objects --------------------------------------


def _configmap(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"mode": "lab"},
    }


def _service(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def _ingress(ns: str) -> dict[str, Any]:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": "lab",
            "rules": [
                {
                    "host": f"web.{ns}.lab.test",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("manifest", "read_back", "check"),
    [
        pytest.param(
            _configmap,
            lambda api, ns: client.CoreV1Api(api).read_namespaced_config_map("settings", ns),
            lambda obj, ns: obj.data == {"mode": "lab"},
            id="a ConfigMap keeps its data",
        ),
        pytest.param(
            _service,
            lambda api, ns: client.CoreV1Api(api).read_namespaced_service("web", ns),
            # The API server allocates from --service-cluster-ip-range.
            lambda obj, ns: obj.spec.cluster_ip.startswith("10.0.0."),
            id="a Service gets a cluster IP from the lab's service range",
        ),
        pytest.param(
            _ingress,
            lambda api, ns: client.NetworkingV1Api(api).read_namespaced_ingress("web", ns),
            lambda obj, ns: (
                obj.spec.ingress_class_name == "lab"
                and obj.spec.rules[0].host == f"web.{ns}.lab.test"
            ),
            id="an Ingress of class lab keeps its rules",
        ),
    ],
)
def test_kubectl_objects_read_back_through_the_python_client(
    lab: Lab, kube: client.ApiClient, namespace: str, manifest: Any, read_back: Any, check: Any
) -> None:
    lab.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest(namespace)))
    assert check(read_back(kube, namespace), namespace)


def test_the_lab_ingress_class_names_the_stand_in_controller(kube: client.ApiClient) -> None:
    ingress_class = client.NetworkingV1Api(kube).read_ingress_class("lab")
    assert ingress_class.spec.controller == "acmebridge.io/lab-ingress"


# --- RBAC with a ServiceAccount token -------------------------------------------------------


def _token_client(kube: client.ApiClient, namespace: str, account: str) -> client.ApiClient:
    """A client that authenticates with a fresh TokenRequest token for the ServiceAccount."""
    core = client.CoreV1Api(kube)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token = core.create_namespaced_service_account_token(account, namespace, request).status.token
    config = client.Configuration()
    config.host = kube.configuration.host
    config.ssl_ca_cert = kube.configuration.ssl_ca_cert
    config.api_key = {"authorization": token}
    config.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(config)


def _can_list_secrets(api: client.ApiClient, namespace: str) -> bool:
    try:
        client.CoreV1Api(api).list_namespaced_secret(namespace)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_rbac_denies_a_service_account_until_a_role_binding_allows_it(
    kube: client.ApiClient, namespace: str
) -> None:
    with _token_client(kube, namespace, "reader") as reader:
        review = client.AuthenticationV1Api(reader).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:reader"
        assert not _can_list_secrets(reader, namespace)

        rbac = client.RbacAuthorizationV1Api(kube)
        rule = client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["list"])
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(metadata=client.V1ObjectMeta(name="secret-lister"), rules=[rule]),
        )
        subject = client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
        role_ref = client.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="Role", name="secret-lister"
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader-lists-secrets"),
                subjects=[subject],
                role_ref=role_ref,
            ),
        )
        # The RBAC authorizer reads through an informer: allow a moment for the binding to arrive.
        wait_for(
            lambda: _can_list_secrets(reader, namespace),
            timeout=10,
            describe="the RoleBinding to allow listing Secrets",
        )


# --- garbage collection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "propagation",
    [
        pytest.param("Background", id="background deletion of the owner removes the child"),
        pytest.param("Foreground", id="foreground deletion of the owner removes the child"),
    ],
)
def test_owner_reference_garbage_collection(
    kube: client.ApiClient, namespace: str, propagation: str
) -> None:
    core = client.CoreV1Api(kube)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1",
        kind="ConfigMap",
        name="owner",
        uid=owner.metadata.uid,
        block_owner_deletion=True,
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="child", owner_references=[reference])
        ),
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy=propagation)

    def gone(name: str) -> bool:
        return get_object(kube, "", "v1", "configmaps", namespace, name) is None

    wait_for(
        lambda: gone("child"), timeout=30, describe="the garbage collector to delete the child"
    )
    wait_for(lambda: gone("owner"), timeout=30, describe="the owner to be deleted")


# --- Pebble issues a certificate after HTTP-01 through the stand-ins -------------------------

# Serves one key authorization, like a solver Pod would, on the address the node agent gives it.
CHALLENGE_SERVER = """
import http.server, sys
host, token, key_authz = sys.argv[1:4]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        found = self.path == "/.well-known/acme-challenge/" + token
        self.send_response(200 if found else 404)
        self.end_headers()
        if found:
            self.wfile.write(key_authz.encode())
http.server.HTTPServer((host, 8089), Handler).serve_forever()
"""


def _solver_objects(
    namespace: str, name: str, token: str, key_authz: str, placement: dict[str, str]
) -> list[dict[str, Any]]:
    labels = {"acmebridge.io/solver": "true", "app": name}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [
                {
                    "name": "solver",
                    "image": "lab.invalid/solver:unused",  # the node agent runs the command
                    "command": ["python3", "-c", CHALLENGE_SERVER, "$(POD_IP)", token, key_authz],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
                    ],
                    "ports": [{"containerPort": 8089}],
                    "readinessProbe": {"tcpSocket": {"port": 8089}, "periodSeconds": 1},
                }
            ],
            # Bound to the node agent's Node while the real node is up (Lab.node_agent_placement).
            **placement,
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8089, "targetPort": 8089}]},
    }
    backend = {"service": {"name": name, "port": {"number": 8089}}}
    path = {"path": f"/.well-known/acme-challenge/{token}", "pathType": "Exact", "backend": backend}
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "lab",
            "rules": [{"host": f"{namespace}.lab.test", "http": {"paths": [path]}}],
        },
    }
    return [pod, service, ingress]


def _fetch_via_ingress(lab: Lab, host: str, token: str) -> str | None:
    """What Pebble will see: GET the challenge path from the ingress stand-in with this Host."""
    url = f"http://127.0.0.1:{lab.http01_port}/.well-known/acme-challenge/{token}"
    request = urllib.request.Request(url, headers={"Host": host})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return None


def _acme_client(lab: Lab) -> acme_client.ClientV2:
    key = josepy.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    # requests accepts a CA file path where acme types `verify_ssl` as a bool.
    ca_file: Any = str(lab.pebble_tls_ca)
    net = acme_client.ClientNetwork(key, verify_ssl=ca_file, user_agent="acmebridge-lab-smoke")
    directory = acme_client.ClientV2.get_directory(lab.pebble_directory_url, net)
    acme = acme_client.ClientV2(directory, net)
    net.account = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    return acme


def _csr(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        # No common name: it is limited to 64 characters, and ACME reads only the SANs.
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_pebble_issues_after_http01_through_the_ingress_and_a_node_agent_pod(
    lab: Lab, namespace: str
) -> None:
    host = f"{namespace}.lab.test"
    acme = _acme_client(lab)
    order = acme.new_order(_csr(host))
    authz = order.authorizations[0]
    challenge = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
    response, key_authz = challenge.response_and_validation(acme.net.key)
    token = challenge.chall.encode("token")

    placement = lab.node_agent_placement()
    for obj in _solver_objects(namespace, "solver", token, key_authz, placement):
        lab.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(obj))
    # Pebble validates once; answer only when the whole route (DNS aside) serves the token.
    wait_for(
        lambda: _fetch_via_ingress(lab, host, token) == key_authz,
        timeout=60,
        describe=lambda: (
            f"the ingress stand-in to serve the token for {host}; pod: "
            + lab.kubectl("get", "pod", "-n", namespace, "solver", "-o", "wide", check=False)
        ),
    )
    acme.answer_challenge(challenge, response)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    order = acme.poll_and_finalize(order, deadline=deadline)

    chain = x509.load_pem_x509_certificates(order.fullchain_pem.encode())
    root = x509.load_pem_x509_certificate(lab.pebble_root.read_bytes())
    leaf, intermediates = chain[0], chain[1:]
    assert leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == [host]
    # Path validation as a TLS client does it: every signature up to the root fetched at start,
    # validity, key usages, and the name.
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(host))
    assert verifier.verify(leaf, intermediates)[-1] == root


# --- labctl ---------------------------------------------------------------------------------


def test_a_second_labctl_up_reuses_the_running_lab(lab: Lab) -> None:
    run_dir = Path(lab.env["LAB_DIR"]) / "run"
    before = {p.name: p.pid for p in labproc.recorded(run_dir)}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "tests.lab.labctl", "up"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "reusing it" in result.stdout
    assert {p.name: p.pid for p in labproc.recorded(run_dir)} == before
