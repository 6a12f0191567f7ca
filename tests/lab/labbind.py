"""BIND 9 in the lab: the DNS server of the DNS-01 test zones, and the resolver the CAs ask.

``named`` (Debian's ``bind9`` package; ``hack/install-bind9.sh`` installs it) runs as one of the
lab's processes, in the foreground, on 127.0.0.1:8054 only, with its configuration, zones and TSIG
key under ``.lab/bind``. It is authoritative for two zones:

* ``dns01.lab.test``: dynamic updates signed with the lab's TSIG key, which may change TXT
  records below the apex and nothing else (the narrowest grant BIND 9.18 can express for names
  that tests make up; docs/dns01.md shows the per-name grant for real zones);
* ``dns01-alias.lab.test``: static, with ``_acme-challenge`` CNAMEs into
  ``delegated.dns01.lab.test``, the way a zone delegates its challenges to a zone an operator may
  update (``cnameStrategy: Follow``).

Every other name is forwarded to pebble-challtestsrv, which answers every name with 127.0.0.1 as
before. Pebble and step-ca resolve through BIND, so a DNS-01 validation really asks BIND. One
difference from asking challtestsrv directly: challtestsrv puts an SOA from another zone
(``challtestsrv.invalid``) in its negative answers, which BIND refuses as a format error, so a
forwarded name with no such record (every AAAA, an unset TXT) gets SERVFAIL instead of an empty
answer. Pebble and step-ca treat both as "no address" and use the A record.

BIND needs nothing from the cluster, so ``labctl up`` starts it alone when it is missing or
unhealthy (:func:`ensure`), like step-ca. Standard library only at module level: ``labctl down``
and ``status`` run without the venv.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.lab import labproc
from tests.lab.labparts import BIND_PORT, DNS_PORT, Component, Layout

NAMED = "named"
NAMED_BIN = Path("/usr/sbin/named")
PORT = BIND_PORT
ADDRESS = f"127.0.0.1:{PORT}"
ZONE = "dns01.lab.test"
ALIAS_ZONE = "dns01-alias.lab.test"
# Where the alias zone's _acme-challenge CNAMEs point: inside the updatable zone.
DELEGATED = f"delegated.{ZONE}"
TSIG_NAME = "acmebridge-lab"
# As an Issuer spells it (cert-manager's names); BIND's own name for it is hmac-sha256.
TSIG_ALGORITHM = "HMACSHA256"
FIXED_PORTS: Mapping[int, str] = {
    PORT: "BIND (the DNS-01 zones, and the resolver Pebble and step-ca ask)"
}


class BindError(Exception):
    """BIND could not be set up or started; the message says why."""


def home(layout: Layout) -> Path:
    return layout.lab / "bind"


def _conf(layout: Layout) -> Path:
    return home(layout) / "named.conf"


def _key_file(layout: Layout) -> Path:
    """The TSIG key as JSON (name, algorithm, secret), for `.lab/env`."""
    return home(layout) / "tsig.json"


def components(layout: Layout) -> list[Component]:
    return [
        Component(
            name=NAMED,
            argv=(
                str(NAMED_BIN),
                # -f: foreground with the configuration's logging (to stderr, so into the lab's
                # log); -g would ignore it. -4: it listens on 127.0.0.1 only anyway. -n 1: one
                # worker thread is plenty for tests on a 2-core machine.
                "-f",
                "-4",
                "-n",
                "1",
                "-c",
                str(_conf(layout)),
            ),
            probe=probe,
            timeout=30,
        )
    ]


def env_values(layout: Layout) -> dict[str, str]:
    """What `.lab/env` says about BIND; the key only once BIND was set up."""
    values = {"BIND_ADDR": ADDRESS, "BIND_ZONE": ZONE, "BIND_ALIAS_ZONE": ALIAS_ZONE}
    try:
        key = json.loads(_key_file(layout).read_text())
    except (OSError, ValueError):
        return values
    values["BIND_TSIG_NAME"] = str(key["name"])
    values["BIND_TSIG_SECRET"] = str(key["secret"])
    values["BIND_TSIG_ALGORITHM"] = str(key["algorithm"])
    return values


# --- health, start, stop --------------------------------------------------------------------------


def probe() -> str | None:
    """Ready when BIND answers its zone's SOA authoritatively and forwards other names."""
    soa = _ask(ZONE, 6)
    if isinstance(soa, str):
        return soa
    if soa[0] != 0 or not soa[1] & 0x0400:
        return f"SOA {ZONE}: rcode {soa[0]}, authoritative {bool(soa[1] & 0x0400)}"
    forwarded = _ask("lab-probe.test", 1)
    if isinstance(forwarded, str):
        return forwarded
    return None if forwarded[0] == 0 else f"lab-probe.test (forwarded): rcode {forwarded[0]}"


def _ask(name: str, qtype: int) -> tuple[int, int] | str:
    """(rcode, flags) of a one-question UDP query to BIND, or why there was none.

    Hand-made with struct: labctl's probes run without the venv, hence without dnspython.
    """
    query_id = secrets.randbelow(1 << 16)
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # RD set: forwarding needs it
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    wire = header + labels + b"\0" + struct.pack("!HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.sendto(wire, ("127.0.0.1", PORT))
            reply = sock.recv(4096)
        except OSError as e:
            return f"BIND on {ADDRESS} does not answer: {e}"
    if len(reply) < 12 or struct.unpack("!H", reply[:2])[0] != query_id:
        return f"BIND on {ADDRESS} sent a malformed reply"
    flags = struct.unpack("!H", reply[2:4])[0]
    return flags & 0x000F, flags


def health(layout: Layout) -> str | None:
    """None when BIND runs and answers; otherwise what is wrong."""
    proc = {p.name: p for p in labproc.recorded(layout.run)}.get(NAMED)
    if proc is None:
        return f"{NAMED} was not started"
    if not proc.alive():
        return f"{NAMED} (pid {proc.pid}) is not running"
    if not _key_file(layout).exists():
        return f"{_key_file(layout)} is missing"
    return probe()


def ensure(
    layout: Layout,
    *,
    launch: Callable[[Sequence[Component]], None],
    say: Callable[[str], None],
) -> bool:
    """Makes sure BIND runs and answers; (re)starts it alone when not. True when it started.

    ``launch`` starts components and waits for their probes (labctl's), raising on failure.
    """
    problem = health(layout)
    if problem is None:
        return False
    if not NAMED_BIN.is_file():
        raise BindError(
            f"{NAMED_BIN} is missing: `make lab-up` installs BIND 9 (hack/install-bind9.sh), "
            "or `apt-get install bind9`"
        )
    if problem != f"{NAMED} was not started":
        say(f"lab: BIND: {problem}: starting it afresh")
    stop(layout)
    taken = [
        f"127.0.0.1:{port} ({what})"
        for port, what in FIXED_PORTS.items()
        if labproc.port_in_use(port) or labproc.port_in_use(port, kind=socket.SOCK_DGRAM)
    ]
    if taken:
        raise BindError(
            "these ports are taken by a process that is not this lab: " + ", ".join(taken)
        )
    prepare(layout)
    launch(components(layout))
    return True


def stop(layout: Layout) -> None:
    """Stops BIND (if it runs) and removes its configuration, zones and journals."""
    procs = [p for p in labproc.recorded(layout.run) if p.name == NAMED]
    left = labproc.terminate([p.pid for p in procs if p.alive()], grace=5)
    if left:
        raise BindError(f"BIND survived SIGKILL: {left}")
    for proc in procs:
        (layout.run / f"{proc.name}.pid").unlink(missing_ok=True)
    shutil.rmtree(home(layout), ignore_errors=True)


# --- set-up ---------------------------------------------------------------------------------------


def prepare(layout: Layout) -> None:
    """A new TSIG key, named.conf and both zone files under .lab/bind."""
    folder = home(layout)
    folder.mkdir(parents=True, mode=0o700)
    secret = base64.b64encode(secrets.token_bytes(32)).decode()
    key = {"name": TSIG_NAME, "algorithm": TSIG_ALGORITHM, "secret": secret}
    _write_private(_key_file(layout), json.dumps(key).encode() + b"\n")
    _write_private(_conf(layout), named_conf(folder, secret).encode())
    (folder / f"{ZONE}.zone").write_text(zone_file())
    (folder / f"{ALIAS_ZONE}.zone").write_text(alias_zone_file())


def named_conf(folder: Path, secret: str) -> str:
    """BIND 9.18's configuration: loopback only, one port, no control channel, two zones."""
    return f"""\
// Written by `labctl up` (tests/lab/labbind.py); removed by `labctl down`.
options {{
    directory "{folder}";
    pid-file none;
    session-keyfile none;
    listen-on port {PORT} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    allow-query {{ 127.0.0.0/8; }};
    // Every name outside the two zones goes to pebble-challtestsrv (every name is 127.0.0.1).
    recursion yes;
    allow-recursion {{ 127.0.0.0/8; }};
    forwarders {{ 127.0.0.1 port {DNS_PORT}; }};
    forward only;
    // challtestsrv's answers are unsigned test data, and nothing here reaches a real root.
    dnssec-validation no;
    // Failures are not remembered: a TXT record set at challtestsrv shows on the next query.
    servfail-ttl 0;
    max-cache-size 32m;
    notify no;
    querylog yes;
}};

// No rndc: the lab stops BIND with a signal, and no control port is opened.
controls {{ }};

logging {{
    channel lab {{ stderr; severity info; print-time yes; print-category yes; }};
    category default {{ lab; }};
    // challtestsrv's negative answers carry an SOA of another zone; BIND logs each as a format
    // error. They are expected here (see tests/lab/labbind.py).
    category lame-servers {{ null; }};
}};

key "{TSIG_NAME}" {{
    algorithm hmac-sha256;
    secret "{secret}";
}};

zone "{ZONE}" {{
    type primary;
    file "{ZONE}.zone";
    // TXT records below the apex, nothing else: the tests make up the names they validate.
    update-policy {{ grant {TSIG_NAME} wildcard *.{ZONE}. TXT; }};
}};

zone "{ALIAS_ZONE}" {{
    type primary;
    file "{ALIAS_ZONE}.zone";
}};
"""


def _soa() -> str:
    # A negative-caching TTL of 0 (the SOA's last field): a name that had no record a moment ago
    # is looked up afresh by anyone who asks again.
    return f"@ SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 0\n@ NS ns1.{ZONE}.\n"


def zone_file() -> str:
    # The one CNAME in the updatable zone: BIND drops a TXT update at its owner without an error
    # (RFC 2181 §10.1: no other data beside a CNAME), the trap cnameStrategy: Follow avoids.
    return (
        f"$ORIGIN {ZONE}.\n$TTL 60\n{_soa()}ns1 A 127.0.0.1\n"
        f"_acme-challenge.cname CNAME cname.{DELEGATED}.\n"
    )


def alias_zone_file() -> str:
    """``_acme-challenge`` CNAMEs into the updatable zone, one of them through a second hop."""
    return (
        f"$ORIGIN {ALIAS_ZONE}.\n$TTL 60\n{_soa()}"
        f"_acme-challenge CNAME apex.{DELEGATED}.\n"
        f"_acme-challenge.www CNAME www.{DELEGATED}.\n"
        f"_acme-challenge.chain CNAME hop.{ALIAS_ZONE}.\n"
        f"hop CNAME chain.{DELEGATED}.\n"
    )


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)
