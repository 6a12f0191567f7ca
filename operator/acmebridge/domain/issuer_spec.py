"""Issuer and ClusterIssuer ``spec.acme``, parsed once into frozen values (ACMEIssuer fields).

The same rules as in ``spec`` apply: nothing from the CRD schema is taken on trust, errors are
``SpecError("InvalidSpec", "<path>: <what to change>")``. The solver Pod overrides are an allow
list: the solver Pod runs restricted, and only placement (node selector, tolerations, affinity,
priority, pull secrets) and resources may be changed; a field the schema would have pruned, such
as ``hostNetwork``, is refused rather than passed on.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

from acmebridge.domain.chain import MAX_BUNDLE_CERTS, parse_pem_certificates
from acmebridge.domain.fields import Fields, check_object_name, invalid
from acmebridge.domain.frozen import (
    FrozenDict,
    JSONValue,
    canonical_sha256,
    freeze_fields,
    freeze_json,
)
from acmebridge.domain.names import canonical_ip, normalise_dns_name

__all__ = [
    "MAX_PEM_BYTES",
    "POD_SPEC_OVERRIDE_KEYS",
    "AcmeIssuerSpec",
    "ExternalAccountBinding",
    "Http01IngressSolver",
    "Rfc2136Solver",
    "SecretKeySelector",
    "Solver",
    "SolverSelector",
]

# Upper bound for a PEM bundle from a spec: generous for any real trust bundle, small enough that
# a mistaken paste of something huge cannot make every reconcile parse megabytes.
MAX_PEM_BYTES = 1 << 20
_PEM_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"
POD_SPEC_OVERRIDE_KEYS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "priorityClassName",
    "serviceAccountName",
    "imagePullSecrets",
    "resources",
)
_NAMESERVER = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]\s/]+)(?::([0-9]{1,5}))?", re.ASCII)


@dataclass(frozen=True)
class SecretKeySelector:
    """One entry of a Secret in the resource's namespace (or the cluster resource namespace)."""

    name: str
    key: str

    @classmethod
    def from_body(
        cls, ref: Any, *, path: str = "secretRef", default_key: str | None = None
    ) -> Self:
        f = Fields(ref, path)
        name = check_object_name(f.required_string("name", max_length=253), f.at("name"))
        key = f.string("key", max_length=253) or default_key
        if key is None:
            f.fail("key", "is required: the entry of the Secret's data to read")
        if not re.fullmatch(r"[-._a-zA-Z0-9]+", key, re.ASCII):
            f.fail(
                "key", f"{key!r} is not a valid Secret data key (letters, digits, '-', '_', '.')"
            )
        return cls(name=name, key=key)


@dataclass(frozen=True)
class ExternalAccountBinding:
    """RFC 8555 §7.3.4: binds the ACME account to an account the CA already knows."""

    key_id: str
    key_secret_ref: SecretKeySelector
    key_algorithm: str = "HS256"

    @classmethod
    def from_body(cls, eab: Any, *, path: str = "externalAccountBinding") -> Self:
        f = Fields(eab, path)
        ref = f.object("keySecretRef", required=True)
        assert ref is not None
        return cls(
            key_id=f.required_string("keyID", max_length=1024),
            key_secret_ref=SecretKeySelector.from_body(ref.data, path=ref.path),
            key_algorithm=f.choice("keyAlgorithm", ("HS256", "HS384", "HS512"), default="HS256"),
        )


@dataclass(frozen=True)
class SolverSelector:
    """Which names a solver serves; empty selects everything, with the lowest priority."""

    dns_names: tuple[str, ...] = ()
    dns_zones: tuple[str, ...] = ()
    match_labels: Mapping[str, str] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        freeze_fields(self, "match_labels")

    @classmethod
    def from_body(cls, selector: Any, *, path: str = "selector") -> Self:
        f = Fields(selector, path)
        return cls(
            dns_names=tuple(
                dict.fromkeys(
                    _dns(p, v, wildcard=True) for p, v in f.items("dnsNames", max_items=100)
                )
            ),
            dns_zones=tuple(
                dict.fromkeys(
                    _dns(p, v, wildcard=False) for p, v in f.items("dnsZones", max_items=100)
                )
            ),
            match_labels=f.string_map("matchLabels", max_value_length=63, check_keys=True),
        )


@dataclass(frozen=True)
class Http01IngressSolver:
    """HTTP-01 through a solver Pod, Service and Ingress (or a path added to Ingress ``name``)."""

    ingress_class_name: str | None = None
    class_name: str | None = None
    name: str | None = None
    service_type: str = "ClusterIP"
    pod_labels: Mapping[str, str] = field(default_factory=FrozenDict)
    pod_annotations: Mapping[str, str] = field(default_factory=FrozenDict)
    pod_spec_overrides: Mapping[str, JSONValue] = field(default_factory=FrozenDict)
    ingress_labels: Mapping[str, str] = field(default_factory=FrozenDict)
    ingress_annotations: Mapping[str, str] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        freeze_fields(
            self,
            "pod_labels",
            "pod_annotations",
            "pod_spec_overrides",
            "ingress_labels",
            "ingress_annotations",
        )

    @classmethod
    def from_body(cls, ingress: Any, *, path: str = "http01.ingress") -> Self:
        f = Fields(ingress, path)
        routes = [k for k in ("ingressClassName", "class", "name") if f.has(k)]
        if len(routes) > 1:
            invalid(
                path,
                f"set at most one of ingressClassName, class or name (got {', '.join(routes)}): "
                "they are three different ways to route the challenge",
            )
        ingress_class = f.string("ingressClassName", max_length=253)
        if ingress_class is not None:
            check_object_name(ingress_class, f.at("ingressClassName"))
        name = f.string("name", max_length=253)
        if name is not None:
            check_object_name(name, f.at("name"))
        pod = f.object("podTemplate") or Fields({}, f.at("podTemplate"))
        pod_meta = pod.object("metadata") or Fields({}, pod.at("metadata"))
        ing = f.object("ingressTemplate") or Fields({}, f.at("ingressTemplate"))
        ing_meta = ing.object("metadata") or Fields({}, ing.at("metadata"))
        return cls(
            ingress_class_name=ingress_class,
            class_name=f.string("class", max_length=253),
            name=name,
            service_type=f.choice("serviceType", ("ClusterIP", "NodePort"), default="ClusterIP"),
            pod_labels=pod_meta.string_map("labels", check_keys=True, label_values=True),
            pod_annotations=pod_meta.string_map("annotations", check_keys=True),
            pod_spec_overrides=_pod_spec_overrides(pod.object("spec")),
            ingress_labels=ing_meta.string_map("labels", check_keys=True, label_values=True),
            ingress_annotations=ing_meta.string_map("annotations", check_keys=True),
        )


def _pod_spec_overrides(spec: Fields | None) -> FrozenDict[str, JSONValue]:
    if spec is None:
        return FrozenDict()
    for key in spec.data:
        if key not in POD_SPEC_OVERRIDE_KEYS:
            invalid(
                spec.at(str(key)),
                "cannot be set on the solver Pod, which always runs restricted; allowed: "
                + ", ".join(POD_SPEC_OVERRIDE_KEYS),
            )
    out: dict[str, Any] = {}
    if spec.has("nodeSelector"):
        out["nodeSelector"] = spec.string_map("nodeSelector", check_keys=True)
    for key in ("priorityClassName", "serviceAccountName"):
        value = spec.string(key, max_length=253)
        if value is not None:
            out[key] = check_object_name(value, spec.at(key))
    for key in ("tolerations", "imagePullSecrets"):
        entries = spec.items(key, max_items=64)
        for path, entry in entries:
            Fields(entry, path)  # each entry must be an object
        if entries:
            out[key] = [entry for _, entry in entries]
    for key in ("affinity", "resources"):
        obj = spec.object(key)
        if obj is not None:
            out[key] = obj.data
    for path, entry in spec.items("imagePullSecrets", max_items=64):
        Fields(entry, path).required_string("name", max_length=253)
    try:
        frozen = freeze_json(out)
    except (TypeError, RecursionError) as e:
        invalid(spec.path, f"must be plain JSON: {e}")
    assert isinstance(frozen, FrozenDict)
    return frozen


@dataclass(frozen=True)
class Rfc2136Solver:
    """DNS-01 by RFC 2136 dynamic update, TSIG-signed when a key is given.

    ``protocol`` is ``dns01.rfc2136.protocol`` (``UDP``, asked again over TCP when an answer is
    truncated, or ``TCP``); ``cname_strategy`` is ``dns01.cnameStrategy`` one level up (``None``,
    or ``Follow``: update the record where a CNAME chain at ``_acme-challenge.<name>`` ends). Both
    keep cert-manager's names and case-sensitive values.
    """

    nameserver: str
    tsig_key_name: str | None = None
    tsig_algorithm: str | None = None
    tsig_secret_ref: SecretKeySelector | None = None
    protocol: str = "UDP"
    cname_strategy: str = "None"

    @classmethod
    def from_body(
        cls, rfc2136: Any, *, path: str = "dns01.rfc2136", cname_strategy: str = "None"
    ) -> Self:
        f = Fields(rfc2136, path)
        nameserver = _nameserver(f.at("nameserver"), f.required_string("nameserver"))
        key_name = f.string("tsigKeyName", max_length=253)
        ref = f.object("tsigSecretSecretRef")
        if (key_name is None) != (ref is None):
            invalid(
                path,
                "tsigKeyName and tsigSecretSecretRef go together: set both to sign updates "
                "with TSIG, or neither",
            )
        algorithm = f.string("tsigAlgorithm")
        if algorithm is not None:
            algorithm = f.choice(
                "tsigAlgorithm", ("HMACMD5", "HMACSHA1", "HMACSHA256", "HMACSHA512"), default=""
            )
        elif key_name is not None:
            # cert-manager silently falls back to HMACMD5; a wrong guess only shows as BADKEY.
            f.fail("tsigAlgorithm", "is required with a TSIG key, for example HMACSHA256")
        return cls(
            nameserver=nameserver,
            tsig_key_name=key_name,
            tsig_algorithm=algorithm,
            tsig_secret_ref=SecretKeySelector.from_body(ref.data, path=ref.path) if ref else None,
            protocol=f.choice("protocol", ("UDP", "TCP"), default="UDP"),
            cname_strategy=cname_strategy,
        )


def _nameserver(path: str, value: str) -> str:
    """``host``, ``host:port`` or ``[v6]:port`` -> ``host:port`` with the default port 53."""
    match = _NAMESERVER.fullmatch(value)
    port = int(match.group(2)) if match and match.group(2) else 53
    if match is None or not 1 <= port <= 65535:
        invalid(
            path,
            f"{value!r} must be host or host:port, with an IPv6 address in brackets, "
            "for example 10.0.0.53:53 or [2001:db8::53]:53",
        )
    host = match.group(1)
    if host.startswith("["):
        try:
            host = f"[{canonical_ip(host[1:-1])}]"
        except ValueError as e:
            invalid(path, str(e))
    return f"{host}:{port}"


@dataclass(frozen=True)
class Solver:
    """One entry of ``spec.acme.solvers``: a selector and exactly one of http01 or dns01."""

    selector: SolverSelector = field(default_factory=SolverSelector)
    http01: Http01IngressSolver | None = None
    dns01: Rfc2136Solver | None = None

    @classmethod
    def from_body(cls, solver: Any, *, path: str = "solver") -> Self:
        f = Fields(solver, path)
        http01 = f.object("http01")
        dns01 = f.object("dns01")
        if (http01 is None) == (dns01 is None):
            invalid(path, "each solver needs exactly one of http01 or dns01")
        selector = f.object("selector")
        http = dns = None
        if http01 is not None:
            ingress = http01.object("ingress")
            if ingress is None:
                http01.fail("ingress", "is required: acmebridge solves HTTP-01 through an Ingress")
            http = Http01IngressSolver.from_body(ingress.data, path=ingress.path)
        if dns01 is not None:
            rfc2136 = dns01.object("rfc2136")
            if rfc2136 is None:
                dns01.fail("rfc2136", "is required: acmebridge solves DNS-01 through RFC 2136")
            dns = Rfc2136Solver.from_body(
                rfc2136.data,
                path=rfc2136.path,
                cname_strategy=dns01.choice("cnameStrategy", ("None", "Follow"), default="None"),
            )
        return cls(
            selector=(
                SolverSelector.from_body(selector.data, path=selector.path)
                if selector
                else SolverSelector()
            ),
            http01=http,
            dns01=dns,
        )


@dataclass(frozen=True)
class AcmeIssuerSpec:
    """``spec.acme`` of an Issuer or ClusterIssuer; PEM bundles are the decoded bytes."""

    server: str
    private_key_secret_ref: SecretKeySelector
    email: str | None = None
    ca_bundle: bytes | None = None
    issuing_ca_bundle: bytes | None = None
    skip_tls_verify: bool = False
    external_account_binding: ExternalAccountBinding | None = None
    profile: str | None = None
    preferred_chain: str | None = None
    disable_account_key_generation: bool = False
    solvers: tuple[Solver, ...] = ()

    @classmethod
    def from_body(cls, spec: Any) -> Self:
        """Parse an Issuer's whole ``body['spec']`` (which holds ``acme``)."""
        acme = Fields(spec, "spec").object("acme", required=True)
        assert acme is not None
        server = acme.required_string("server", max_length=2048)
        _check_server(acme.at("server"), server)
        email = acme.string("email", max_length=254)
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            acme.fail("email", f"{email!r} is not a plain address such as pki@example.com")
        ca_bundle = _pem_bundle(acme, "caBundle")
        skip = acme.boolean("skipTLSVerify")
        if skip and ca_bundle is not None:
            invalid(
                acme.path,
                "caBundle and skipTLSVerify are mutually exclusive: keep caBundle (the CA that "
                "signed the ACME server's TLS certificate) and remove skipTLSVerify",
            )
        key_ref = acme.object("privateKeySecretRef", required=True)
        assert key_ref is not None
        eab = acme.object("externalAccountBinding")
        profile = acme.string("profile", max_length=64)
        if profile is not None and any(c.isspace() for c in profile):
            acme.fail("profile", f"{profile!r} must be a profile name without spaces")
        return cls(
            server=server,
            email=email,
            ca_bundle=ca_bundle,
            issuing_ca_bundle=_pem_bundle(acme, "issuingCABundle"),
            skip_tls_verify=skip,
            private_key_secret_ref=SecretKeySelector.from_body(
                key_ref.data, path=key_ref.path, default_key="tls.key"
            ),
            external_account_binding=(
                ExternalAccountBinding.from_body(eab.data, path=eab.path) if eab else None
            ),
            profile=profile,
            preferred_chain=acme.string("preferredChain", max_length=64),
            disable_account_key_generation=acme.boolean("disableAccountKeyGeneration"),
            solvers=tuple(
                Solver.from_body(item, path=p) for p, item in acme.items("solvers", max_items=20)
            ),
        )

    def account_hash(self) -> str:
        """sha256 hex of what identifies the ACME account: a change means registering again."""
        eab = self.external_account_binding
        return canonical_sha256(
            {
                "v": 1,
                "server": self.server,
                "email": self.email,
                "privateKeySecretRef": [
                    self.private_key_secret_ref.name,
                    self.private_key_secret_ref.key,
                ],
                "eabKeyID": eab.key_id if eab else None,
            }
        )


def _dns(path: str, value: Any, *, wildcard: bool) -> str:
    if not isinstance(value, str):
        invalid(path, f"must be a string, got {value!r}")
    try:
        return normalise_dns_name(value, allow_wildcard=wildcard)
    except ValueError as e:
        invalid(path, str(e))


def _check_server(path: str, value: str) -> None:
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018  # raises ValueError for a port out of range
    except ValueError:
        hostname = None
        parts = None
    if parts is None or parts.scheme != "https" or not hostname or any(c.isspace() for c in value):
        invalid(
            path,
            f"{value!r} must be the https:// URL of the ACME directory, for example "
            "https://ca.internal.example/acme/acme/directory (RFC 8555 §6.1 requires HTTPS)",
        )
    if "@" in parts.netloc or "\\" in value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        # URL parsers disagree on the host of such a URL (urlsplit and urllib3 pick different
        # ones), and a password in it would be shown wherever the server is: status, Events.
        invalid(
            path,
            f"{value!r} must not carry a user name or password, a backslash or control "
            "characters: write the directory URL as https://host[:port]/path",
        )


def _pem_bundle(acme: Fields, key: str) -> bytes | None:
    """Decode a base64 PEM bundle and parse it, with the limits of ``domain.chain``.

    Parsed here, once per spec, so that a broken bundle is an InvalidSpec that names the field,
    rather than an error wherever the bundle is used later (the ACME session, ``ca.crt``).
    """
    text = acme.string(key)
    if text is None:
        return None
    if text.lstrip().startswith("-----BEGIN"):
        acme.fail(
            key, "is PEM text, but must be base64-encoded PEM (for example base64 -w0 ca.pem)"
        )
    compact = "".join(text.split())
    if len(compact) > (MAX_PEM_BYTES + 2) // 3 * 4:
        acme.fail(key, f"must be at most {MAX_PEM_BYTES} bytes of PEM")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        acme.fail(key, "is not valid base64: it must be base64-encoded PEM")
    if len(data) > MAX_PEM_BYTES:
        acme.fail(key, f"must be at most {MAX_PEM_BYTES} bytes of PEM")
    if _PEM_CERT_MARKER not in data:
        acme.fail(key, "must hold at least one PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        parse_pem_certificates(data, max_bytes=MAX_PEM_BYTES, max_certs=MAX_BUNDLE_CERTS)
    except ValueError as e:
        acme.fail(key, str(e))  # chain's messages say where, and never quote the input
    return data
