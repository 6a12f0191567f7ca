"""DNS-01's pure decisions: record names, TSIG names, the SOA walk, CNAME chains, the check.

Replies are written by hand as the adapter would read them from a server (``Reply``), so each
case shows the DNS answer it is about.
"""

from __future__ import annotations

import pytest

from acmebridge.domain.dns01 import (
    Record,
    Reply,
    ZoneStep,
    challenge_name,
    cname_target,
    explain_rcode,
    parse_server,
    propagation,
    rcode_severity,
    soa_step,
    tsig_algorithm,
    txt_values,
)
from acmebridge.domain.errors import DnsProblem, Severity, classify, is_user_fixable

NS = "10.0.0.53:53"


def soa(owner: str) -> Record:
    return Record(owner, "SOA", "ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60")


def cname(owner: str, target: str) -> Record:
    return Record(owner, "CNAME", target)


def txt(owner: str, value: str) -> Record:
    return Record(owner, "TXT", value)


@pytest.mark.parametrize(
    ("identifier", "name"),
    [
        pytest.param("www.example.com", "_acme-challenge.www.example.com.", id="a plain name"),
        pytest.param("*.example.com", "_acme-challenge.example.com.",
                     id="a wildcard loses its star and shares the apex's name"),
        pytest.param("Example.COM.", "_acme-challenge.example.com.",
                     id="case and a trailing dot do not matter"),
    ],
)  # fmt: skip
def test_the_challenge_record_name(identifier: str, name: str) -> None:
    assert challenge_name(identifier) == name


@pytest.mark.parametrize(
    "identifier",
    [
        pytest.param("", id="refuses an empty name"),
        pytest.param("*.", id="refuses a bare wildcard"),
        pytest.param("a.*.example.com", id="refuses a star that is not the leftmost label"),
    ],
)
def test_the_challenge_record_name_refuses_what_is_no_dns_name(identifier: str) -> None:
    with pytest.raises(ValueError, match="not a DNS name"):
        challenge_name(identifier)


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        pytest.param("HMACMD5", "hmac-md5.sig-alg.reg.int.", id="HMACMD5 is the RFC 2845 name"),
        pytest.param("HMACSHA1", "hmac-sha1.", id="HMACSHA1"),
        pytest.param("HMACSHA256", "hmac-sha256.", id="HMACSHA256"),
        pytest.param("HMACSHA512", "hmac-sha512.", id="HMACSHA512"),
        pytest.param("hmacsha256", "hmac-sha256.",
                     id="any case, as cert-manager accepts it"),
    ],
)  # fmt: skip
def test_tsig_algorithms_map_to_their_registered_names(algorithm: str, expected: str) -> None:
    assert tsig_algorithm(algorithm) == expected


def test_an_unknown_tsig_algorithm_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="HMACMD5, HMACSHA1, HMACSHA256, HMACSHA512"):
        tsig_algorithm("HMACSHA224")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("10.0.0.53", ("10.0.0.53", 53), id="the port defaults to 53"),
        pytest.param("ns1.example.com:5353", ("ns1.example.com", 5353), id="a host name and port"),
        pytest.param("[2001:db8::53]:53", ("2001:db8::53", 53), id="IPv6 loses its brackets"),
    ],
)  # fmt: skip
def test_server_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2001:db8::53", id="refuses IPv6 without brackets"),
        pytest.param("ns:0", id="refuses port 0"),
        pytest.param("ns:70000", id="refuses a port above 65535"),
    ],
)
def test_server_addresses_refused(text: str) -> None:
    with pytest.raises(ValueError, match="host or host:port"):
        parse_server(text)


# --- the SOA walk ---------------------------------------------------------------------------------

NAME = "_acme-challenge.www.example.com."


@pytest.mark.parametrize(
    ("candidate", "reply", "step"),
    [
        pytest.param("example.com.", Reply(NS, "NOERROR", answer=(soa("example.com."),)),
                     ZoneStep(zone="example.com."),
                     id="an SOA owned by the name makes it the apex"),
        pytest.param(NAME, Reply(NS, "NXDOMAIN", authority=(soa("example.com."),)),
                     ZoneStep(next_name="example.com."),
                     id="NXDOMAIN's authority SOA jumps to the zone"),
        pytest.param(NAME, Reply(NS, "NOERROR", authority=(soa("example.com."),)),
                     ZoneStep(next_name="example.com."),
                     id="no data: the authority SOA jumps to the zone"),
        pytest.param(NAME, Reply(NS, "NOERROR", answer=(cname(NAME, "x.acme.example.net."),),
                                 authority=(soa("acme.example.net."),)),
                     ZoneStep(next_name="www.example.com."),
                     id="a CNAME's target zone is no ancestor: one label up instead"),
        pytest.param(NAME, Reply(NS, "SERVFAIL"), ZoneStep(next_name="www.example.com."),
                     id="SERVFAIL moves one label up"),
        pytest.param(NAME, Reply(NS, "REFUSED", authority=(soa("example.com."),)),
                     ZoneStep(next_name="www.example.com."),
                     id="a refusal's authority section is not trusted"),
        pytest.param("com.", Reply(NS, "SERVFAIL"), ZoneStep(next_name="."),
                     id="a top-level name's parent is the root"),
        pytest.param(".", Reply(NS, "SERVFAIL"), ZoneStep(), id="the root has no parent"),
    ],
)  # fmt: skip
def test_soa_walk_steps(candidate: str, reply: Reply, step: ZoneStep) -> None:
    assert soa_step(candidate, reply) == step


# --- CNAME chains ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "target"),
    [
        pytest.param((), NAME, id="no CNAME: the name itself"),
        pytest.param((cname(NAME, "www.acme.example.net."), txt("www.acme.example.net.", "v")),
                     "www.acme.example.net.", id="one hop"),
        pytest.param((cname("hop.example.net.", "end.example.org."),
                      cname(NAME, "hop.example.net.")),
                     "end.example.org.", id="two hops, answered out of order"),
        pytest.param((cname("elsewhere.example.com.", "x.example.net."),), NAME,
                     id="a CNAME of another name is not ours"),
    ],
)  # fmt: skip
def test_cname_chains_end_where_the_ca_reads(answer: tuple[Record, ...], target: str) -> None:
    assert cname_target(NAME, Reply(NS, "NOERROR", answer=answer)) == target


def test_a_cname_loop_is_a_permanent_problem_naming_the_chain() -> None:
    loop = Reply(
        NS, "NOERROR", answer=(cname(NAME, "a.example.com."), cname("a.example.com.", NAME))
    )
    with pytest.raises(DnsProblem) as raised:
        cname_target(NAME, loop)
    assert f"loops ({NAME} -> a.example.com. -> {NAME})" in str(raised.value)
    assert classify(raised.value) is Severity.PERMANENT


def test_a_chain_longer_than_allowed_is_refused() -> None:
    hops = [f"h{i}.example.com." for i in range(5)]
    chain = [cname(a, b) for a, b in zip([NAME, *hops], hops, strict=False)]
    with pytest.raises(DnsProblem, match="longer than 3 CNAMEs"):
        cname_target(NAME, Reply(NS, "NOERROR", answer=tuple(chain)), max_hops=3)


def test_txt_values_follow_the_chain_and_ignore_other_names() -> None:
    reply = Reply(
        NS,
        "NOERROR",
        answer=(
            cname(NAME, "t.example.net."),
            txt("t.example.net.", "one"),
            txt("t.example.net.", "two"),
            txt("other.example.net.", "three"),
        ),
    )
    assert txt_values(NAME, reply) == {"one", "two"}


# --- classifying failures -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rcode", "severity"),
    [
        pytest.param("SERVFAIL", Severity.TEMPORARY, id="SERVFAIL may pass"),
        pytest.param("REFUSED", Severity.PERMANENT, id="REFUSED repeats until the policy changes"),
        pytest.param("NOTAUTH", Severity.PERMANENT, id="NOTAUTH: wrong zone or TSIG key"),
        pytest.param("NXDOMAIN", Severity.PERMANENT, id="NXDOMAIN"),
        pytest.param("NOTZONE", Severity.PERMANENT, id="NOTZONE"),
        pytest.param("NOTIMP", Severity.PERMANENT, id="NOTIMP: no updates on this server"),
        pytest.param("FORMERR", Severity.PERMANENT, id="FORMERR"),
        pytest.param("BADCOOKIE", Severity.TEMPORARY, id="an rcode not known here is retried"),
    ],
)  # fmt: skip
def test_rcode_severity(rcode: str, severity: Severity) -> None:
    assert rcode_severity(rcode) is severity


@pytest.mark.parametrize(
    ("rcode", "tsig_error", "words"),
    [
        pytest.param("NOTAUTH", "BADSIG", "TSIG secret or algorithm does not match",
                     id="BADSIG points at the secret"),
        pytest.param("NOTAUTH", "BADKEY", "does not know a TSIG key of this name",
                     id="BADKEY points at the key name"),
        pytest.param("NOTAUTH", "BADTIME", "synchronise the clocks", id="BADTIME at the clocks"),
        pytest.param("NOTAUTH", None, "not authoritative for the zone",
                     id="NOTAUTH without a TSIG error is the zone"),
        pytest.param("REFUSED", None, "update-policy", id="REFUSED points at the grant"),
        pytest.param("YXDOMAIN", None, "prerequisite", id="a failed prerequisite"),
        pytest.param("RCODE23", None, "answered RCODE23", id="an unknown rcode is named"),
    ],
)  # fmt: skip
def test_rcodes_are_explained_for_whoever_fixes_them(
    rcode: str, tsig_error: str | None, words: str
) -> None:
    assert words in explain_rcode(rcode, tsig_error)


def test_dns_problems_are_classified_by_their_own_severity_and_are_user_fixable() -> None:
    temporary = DnsProblem("no answer", server=NS, severity=Severity.TEMPORARY)
    refused = DnsProblem("refused", server=NS, rcode="REFUSED", severity=Severity.PERMANENT)
    assert classify(temporary) is Severity.TEMPORARY
    assert classify(refused) is Severity.PERMANENT
    assert is_user_fixable(refused) and is_user_fixable(temporary)
    assert refused.short == "answered REFUSED"
    bad_sig = DnsProblem("x", server=NS, rcode="NOTAUTH", tsig_error="BADSIG",
                         severity=Severity.PERMANENT)  # fmt: skip
    assert bad_sig.short == "answered NOTAUTH (BADSIG)"


# --- the propagation check ------------------------------------------------------------------------

OTHER = "10.0.0.54:53"
THIRD = "10.0.0.55:53"


def test_the_check_is_complete_when_every_server_answers_the_value() -> None:
    answers = [Reply(s, "NOERROR", answer=(txt(NAME, "v"), txt(NAME, "w"))) for s in (NS, OTHER)]
    result = propagation(NAME, "v", answers, servers=[NS, OTHER])
    assert result.complete
    assert result.message() == f"all 2 server(s) answer the TXT value at {NAME}"


def test_the_check_names_each_server_without_the_value_and_why() -> None:
    answers: list[Reply | DnsProblem] = [
        Reply(NS, "NOERROR", answer=(txt(NAME, "v"),)),
        Reply(OTHER, "NXDOMAIN"),
        DnsProblem("t", server=THIRD, severity=Severity.TEMPORARY, short="no answer over UDP"),
    ]
    result = propagation(NAME, "v", answers, servers=[NS, OTHER, THIRD])
    assert not result.complete
    assert [m.server for m in result.missing] == [OTHER, THIRD]
    assert result.message() == (
        f"2 of 3 server(s) do not answer the TXT value at {NAME} yet "
        f"({OTHER}: answered no TXT record; {THIRD}: no answer over UDP)"
    )


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        pytest.param(Reply(NS, "NOERROR", answer=(txt(NAME, "old"),)),
                     "answered 1 other value(s)", id="another value only"),
        pytest.param(Reply(NS, "REFUSED"), "answered REFUSED", id="a refusal"),
        pytest.param(Reply(NS, "NXDOMAIN", answer=(cname(NAME, "t.example.net."),)),
                     f"answered no TXT record; {NAME} is a CNAME to t.example.net., and "
                     "cnameStrategy: Follow would update that",
                     id="a CNAME at the name says Follow would help"),
    ],
)  # fmt: skip
def test_what_a_server_without_the_value_answered(reply: Reply, why: str) -> None:
    result = propagation(NAME, "v", [reply], servers=[NS])
    assert [m.why for m in result.missing] == [why]


def test_no_servers_to_check_is_never_complete() -> None:
    result = propagation(NAME, "v", [], servers=[])
    assert not result.complete
    assert result.message() == f"no DNS server to check {NAME} on"
