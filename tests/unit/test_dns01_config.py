"""``--dns01-nameservers`` and ``ACMEBRIDGE_DNS01_NAMESERVERS``: parsed, checked at start-up."""

from __future__ import annotations

import argparse

import pytest

from acmebridge import __main__ as cli_main
from acmebridge.config import OperatorConfig


def _run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_main._run_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["run", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param((), (), id="none by default: the zone's own servers"),
        pytest.param(("--dns01-nameservers", "10.0.0.53,ns1.example.com:5353"),
                     ("10.0.0.53", "ns1.example.com:5353"), id="comma-separated"),
        pytest.param(("--dns01-nameservers=10.0.0.53", "--dns01-nameservers=[2001:db8::53]:53"),
                     ("10.0.0.53", "[2001:db8::53]:53"), id="repeated"),
    ],
)  # fmt: skip
def test_the_flag(argv: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert cli_main._config(_run_args(*argv)).dns01_nameservers == expected


def test_a_bad_server_is_refused_at_start_up(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        _run_args("--dns01-nameservers", "2001:db8::53")
    assert raised.value.code == 2
    assert "'2001:db8::53' must be host or host:port" in capsys.readouterr().err


def test_the_environment_variable() -> None:
    env = {"ACMEBRIDGE_DNS01_NAMESERVERS": "10.0.0.53:53, 10.0.0.54"}
    assert OperatorConfig.from_env(env).dns01_nameservers == ("10.0.0.53:53", "10.0.0.54")
