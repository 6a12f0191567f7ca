"""step-ca in the lab: an organisation's existing PKI, served through ACME the way step-ca does it.

The "enterprise" PKI is made here with `cryptography` at every start, as an organisation would
already have it: a root ("Example Corp Root CA 2026") and an issuing CA under it ("Example Corp
Issuing CA 1") whose AIA caIssuers URL points at a plain-HTTP publication point for the root, as
internal PKIs publish theirs. step-ca is then set up the way its documentation tells an
administrator to bring an existing PKI: `step ca init --root --key` with that root, after which
its generated intermediate is replaced by the issuing CA (certificate and encrypted key). It
serves two ACME provisioners: ``acme``, and ``acme-eab``, which requires external account binding
(EAB).

Why ``hack/stepca-eab``: open-source step-ca checks EAB against keys in its database, but the admin
API that would create them answers "only available in Certificate Manager". The lab stores keys with
step-ca's own database code instead, before step-ca starts (its database admits one process). A key
binds to the first account that uses it and is then spent, so besides the key in `.lab/env` for
people, there is a pool of keys for tests, each claimed by exactly one test
(:func:`claim_eab_key`).

step-ca depends on nothing in the cluster, so `labctl up` starts it on its own when it is missing
or unhealthy (:func:`ensure`), without restarting the cluster. Nothing here imports a third-party
package at module level: `labctl down` and `status` run without the venv.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.lab import labprobes, labproc
from tests.lab.labparts import BIND_PORT, HTTP01_PORT, Component, Layout, child_env
from tests.lab.nodenet import BRIDGE_ADDRESS

STEPCA = "step-ca"
AIA = "pki-aia"
STEPCA_PORT = 9443
AIA_PORT = 9480
FIXED_PORTS: Mapping[int, str] = {
    STEPCA_PORT: "step-ca's ACME API",
    AIA_PORT: "the enterprise PKI's AIA publication point",
}
# From .lab/bin (hack/build-lab-bin.sh builds them).
BINARIES = ("step-ca", "step", "stepca-eab")

ORGANIZATION = "Example Corp"
ROOT_CN = "Example Corp Root CA 2026"
ISSUING_CN = "Example Corp Issuing CA 1"
ROOT_FILE = "example-corp-root-ca-2026.crt"
PROVISIONER = "acme"
EAB_PROVISIONER = "acme-eab"
# Keys in the tests' pool; when every one is claimed, `labctl up` restarts step-ca with new ones.
TEST_EAB_KEYS = 100

BASE_URL = f"https://127.0.0.1:{STEPCA_PORT}"
AIA_URL = f"http://127.0.0.1:{AIA_PORT}/{ROOT_FILE}"


class StepCaError(Exception):
    """step-ca could not be set up or started; the message says why."""


def directory_url(provisioner: str) -> str:
    return f"{BASE_URL}/acme/{provisioner}/directory"


# --- where things live --------------------------------------------------------------------------


def home(layout: Layout) -> Path:
    return layout.lab / "stepca"


def steppath(layout: Layout) -> Path:
    """STEPPATH: what `step ca init` writes (config, certs, secrets, db)."""
    return home(layout) / "step"


def ca_json(layout: Layout) -> Path:
    return steppath(layout) / "config" / "ca.json"


def password_file(layout: Layout) -> Path:
    return home(layout) / "password"


def root_pem(layout: Layout) -> Path:
    """The enterprise root: what issued certificates chain to, and what signs step-ca's HTTPS."""
    return home(layout) / "enterprise" / "root.pem"


def eab_file(layout: Layout) -> Path:
    return home(layout) / "eab.json"


def eab_pool(layout: Layout) -> Path:
    return home(layout) / "eab-keys"


def _aia_dir(layout: Layout) -> Path:
    return home(layout) / "aia"


# --- components ---------------------------------------------------------------------------------


def components(layout: Layout) -> list[Component]:
    return [_stepca(layout), _aia(layout)]


def _stepca(layout: Layout) -> Component:
    return Component(
        name=STEPCA,
        argv=(
            str(layout.bin / "step-ca"),
            str(ca_json(layout)),
            f"--password-file={password_file(layout)}",
            # Names resolve through BIND: its DNS-01 zones, and challtestsrv for every other name
            # (127.0.0.1). HTTP-01 is validated on the ingress stand-in's port instead of 80
            # (which needs --insecure).
            f"--resolver=127.0.0.1:{BIND_PORT}",
            "--insecure",
            f"--acme-http-port={HTTP01_PORT}",
        ),
        env={"STEPPATH": str(steppath(layout))},
        probe=labprobes.acme_directory(directory_url(PROVISIONER), tls_ca=root_pem(layout)),
        timeout=30,
    )


def _aia(layout: Layout) -> Component:
    return Component(
        name=AIA,
        argv=(
            sys.executable,
            "-m",
            "http.server",
            "--bind=127.0.0.1",
            f"--directory={_aia_dir(layout)}",
            str(AIA_PORT),
        ),
        probe=labprobes.expect_ok(AIA_URL),
        timeout=30,
    )


def env_values(layout: Layout) -> dict[str, str]:
    """What `.lab/env` says about step-ca; the EAB key only once step-ca was set up."""
    values = {
        "STEPCA_DIRECTORY_URL": directory_url(PROVISIONER),
        "STEPCA_EAB_DIRECTORY_URL": directory_url(EAB_PROVISIONER),
        "STEPCA_ROOT": str(root_pem(layout)),
        # step-ca serves HTTPS with a certificate from the issuing CA, so the root verifies it.
        "STEPCA_TLS_CA": str(root_pem(layout)),
        "STEPCA_EAB_KEYS": str(eab_pool(layout)),
    }
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        key = json.loads(eab_file(layout).read_text())
        values["STEPCA_EAB_KID"] = str(key["keyID"])
        values["STEPCA_EAB_HMAC"] = str(key["hmacKey"])
    return values


# --- health, start, stop ------------------------------------------------------------------------


def health(layout: Layout) -> str | None:
    """None when step-ca and the AIA server run and answer; otherwise what is wrong."""
    procs = {p.name: p for p in labproc.recorded(layout.run)}
    for component in components(layout):
        proc = procs.get(component.name)
        if proc is None:
            return f"{component.name} was not started"
        if not proc.alive():
            return f"{component.name} (pid {proc.pid}) is not running"
        why = component.probe()
        if why is not None:
            return f"{component.name} is unhealthy: {why}"
    if not eab_file(layout).exists():
        return f"{eab_file(layout)} is missing"
    return None


def ensure(
    layout: Layout,
    *,
    launch: Callable[[Sequence[Component]], None],
    say: Callable[[str], None],
) -> bool:
    """Makes sure step-ca runs and answers; (re)starts it alone when not. True when it started.

    ``launch`` starts components and waits for their probes (labctl's), raising on failure.
    """
    problem = health(layout)
    if problem is None and not _unclaimed(layout):
        problem = "every EAB key for tests has been claimed"
    if problem is None:
        return False
    missing = [name for name in BINARIES if not (layout.bin / name).is_file()]
    if missing:
        raise StepCaError(
            f"{', '.join(missing)} missing from {layout.bin}: run `make lab-bin` first"
        )
    if problem != f"{STEPCA} was not started":
        say(f"lab: step-ca: {problem}: starting it afresh")
    stop(layout)
    taken = [f"127.0.0.1:{p} ({what})" for p, what in FIXED_PORTS.items() if labproc.port_in_use(p)]
    if taken:
        raise StepCaError(
            "these ports are taken by a process that is not this lab: " + ", ".join(taken)
        )
    prepare(layout)
    launch(components(layout))
    return True


def stop(layout: Layout) -> None:
    """Stops step-ca and the AIA server (if they run) and removes their state."""
    names = {c.name for c in components(layout)}
    procs = [p for p in labproc.recorded(layout.run) if p.name in names]
    # step-ca closes its database on SIGTERM; the grace time lets it finish doing so.
    left = labproc.terminate([p.pid for p in procs if p.alive()], grace=5)
    if left:
        raise StepCaError(f"step-ca processes survived SIGKILL: {left}")
    for proc in procs:
        (layout.run / f"{proc.name}.pid").unlink(missing_ok=True)
    shutil.rmtree(home(layout), ignore_errors=True)


# --- set-up -------------------------------------------------------------------------------------


def prepare(layout: Layout) -> None:
    """The enterprise PKI, `step ca init` with its root, the issuing CA swapped in, EAB keys."""
    stepca_home = home(layout)
    stepca_home.mkdir(parents=True, mode=0o700)
    password = secrets.token_urlsafe(24)
    _write_private(password_file(layout), password.encode())
    enterprise = root_pem(layout).parent
    enterprise.mkdir()
    pki = _enterprise_pki(password.encode())
    root_pem(layout).write_bytes(pki["root.pem"])
    root_key = enterprise / "root-key.pem"
    _write_private(root_key, pki["root-key.pem"])
    (enterprise / "issuing.pem").write_bytes(pki["issuing.pem"])
    _write_private(enterprise / "issuing-key.pem", pki["issuing-key.pem"])
    _aia_dir(layout).mkdir()
    (_aia_dir(layout) / ROOT_FILE).write_bytes(pki["root.der"])

    _step(
        layout,
        "ca",
        "init",
        "--deployment-type=standalone",
        f"--name={ORGANIZATION} ACME",
        "--dns=127.0.0.1",
        "--dns=localhost",
        # Pods on the real node reach step-ca at the host's bridge address (make node-up).
        f"--dns={BRIDGE_ADDRESS}",
        f"--address=127.0.0.1:{STEPCA_PORT}",
        "--provisioner=admin",
        f"--password-file={password_file(layout)}",
        f"--provisioner-password-file={password_file(layout)}",
        f"--root={root_pem(layout)}",
        f"--key={root_key}",
        "--acme",
        # Provisioners live in step-ca's database, where EAB keys are stored under their IDs.
        "--remote-management",
    )
    # The root key goes back offline: step-ca signs with the issuing CA only.
    root_key.unlink()
    config = json.loads(ca_json(layout).read_text())
    # Replace the intermediate `step ca init` generated by the enterprise's issuing CA. step-ca
    # decrypts its key with --password-file, so it stays encrypted (PKCS#8) under that password.
    Path(config["crt"]).write_bytes(pki["issuing.pem"])
    _write_private(Path(config["key"]), pki["issuing-key.pem"])
    _make_eab_keys(layout, config["db"])


def _make_eab_keys(layout: Layout, db: Mapping[str, str]) -> None:
    result = subprocess.run(
        [
            str(layout.bin / "stepca-eab"),
            f"-db-type={db['type']}",
            f"-data-source={db['dataSource']}",
            f"-provisioner={EAB_PROVISIONER}",
            f"-count={1 + TEST_EAB_KEYS}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(layout),
        check=False,
    )
    if result.returncode != 0:
        raise StepCaError(f"stepca-eab failed:\n{result.stderr.strip()}")
    keys = [line for line in result.stdout.splitlines() if line.strip()]
    if len(keys) != 1 + TEST_EAB_KEYS:
        raise StepCaError(f"stepca-eab printed {len(keys)} keys, not {1 + TEST_EAB_KEYS}")
    _write_private(eab_file(layout), keys[0].encode() + b"\n")
    pool = eab_pool(layout)
    pool.mkdir(mode=0o700)
    (pool / "claimed").mkdir(mode=0o700)
    for line in keys[1:]:
        _write_private(pool / f"{json.loads(line)['keyID']}.json", line.encode() + b"\n")


def _step(layout: Layout, *args: str) -> None:
    result = subprocess.run(
        [str(layout.bin / "step"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(layout, {"STEPPATH": str(steppath(layout))}),
        check=False,
    )
    if result.returncode != 0:
        raise StepCaError(
            f"step {' '.join(args[:2])} failed:\n{result.stdout.strip()}\n{result.stderr.strip()}"
        )


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def _enterprise_pki(password: bytes) -> dict[str, bytes]:
    """Root and issuing CA of "Example Corp", as PEM (and the root as DER, for AIA)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    ca_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = name(ROOT_CN)
    # Fresh at every start, like the rest of the lab's keys: short validity is enough.
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=60))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False)
        .sign(root_key, hashes.SHA384())
    )
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing = (
        x509.CertificateBuilder()
        .subject_name(name(ISSUING_CN))
        .issuer_name(root_name)
        .public_key(issuing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(issuing_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        # No nameConstraints: step-ca would enforce them on every order, which tests do not
        # want. The caIssuers URL is how a client finds the root from the chain alone.
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.CA_ISSUERS,
                        x509.UniformResourceIdentifier(AIA_URL),
                    )
                ]
            ),
            critical=False,
        )
        .sign(root_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    return {
        "root.pem": root.public_bytes(pem),
        "root.der": root.public_bytes(serialization.Encoding.DER),
        "root-key.pem": root_key.private_bytes(pem, pkcs8, serialization.NoEncryption()),
        "issuing.pem": issuing.public_bytes(pem),
        "issuing-key.pem": issuing_key.private_bytes(
            pem, pkcs8, serialization.BestAvailableEncryption(password)
        ),
    }


# --- EAB keys for tests -------------------------------------------------------------------------


def _unclaimed(layout: Layout) -> list[Path]:
    pool = eab_pool(layout)
    return sorted(pool.glob("*.json")) if pool.is_dir() else []


def claim_eab_key(pool: Path) -> tuple[str, str]:
    """(key ID, HMAC key) of an EAB key no one else has claimed; ``pool`` is STEPCA_EAB_KEYS.

    A claim is a rename into ``claimed/``: atomic, so two tests (or two engineers' test runs)
    never get the same key. Raises StepCaError when every key is claimed; the next `labctl up`
    (every test session runs one) then restarts step-ca with new keys.
    """
    for path in sorted(pool.glob("*.json")):
        target = pool / "claimed" / path.name
        try:
            path.rename(target)
        except FileNotFoundError:
            continue  # claimed by someone else in between
        key = json.loads(target.read_text())
        return str(key["keyID"]), str(key["hmacKey"])
    raise StepCaError(
        f"every EAB key in {pool} has been claimed; run `make lab-up`, which restarts step-ca "
        "with new keys"
    )
