"""Makes the lab's loopback servers reachable from the real node's Pods, at the bridge address.

The lab's servers listen on 127.0.0.1 only, and from inside a Pod 127.0.0.1 is the Pod itself.
This relay listens on the host's address on the node's bridge (10.244.1.1) and forwards each TCP
connection, byte for byte, to the same port on 127.0.0.1 (TLS stays end to end: the client
verifies the real server's certificate). It also relays DNS over UDP: on port 53 of the bridge
address from the lab's DNS (pebble-challtestsrv, which answers every name with 127.0.0.1), and on
BIND's port from BIND, replacing 127.0.0.1 in the answers with the bridge address: the same host,
as a Pod sees it. It binds to nothing but the bridge address, which exists only on the lab's
bridge.

    python -m tests.lab.labrelay --listen 10.244.1.1 --tcp 14000 --tcp 6443:41234 \
        --dns 53:8053 --dns 8054 --tcp 8054

``--tcp P`` forwards bridge:P to 127.0.0.1:P; ``--tcp P:Q`` forwards bridge:P to 127.0.0.1:Q.
``--dns`` takes the same forms for DNS over UDP (DNS over TCP is forwarded as it is, by
``--tcp``: zone transfers and RFC 2136 updates carry no addresses to rewrite). Standard library
only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import logging
import signal
import struct
import sys
from collections.abc import Sequence

log = logging.getLogger("labrelay")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1").packed
DNS_TIMEOUT = 5.0
A, IN = 1, 1


def rewrite_a_records(message: bytes, replacement: bytes) -> bytes:
    """A DNS response with every A record of 127.0.0.1 in its sections replaced.

    Pure: walks the wire format (RFC 1035 §4.1) without decompressing names; anything it cannot
    parse is returned unchanged, so a malformed answer reaches the client as the server sent it.
    """
    try:
        return _rewrite(message, replacement)
    except (IndexError, struct.error, ValueError):
        return message


def _skip_name(message: bytes, offset: int) -> int:
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def _rewrite(message: bytes, replacement: bytes) -> bytes:
    out = bytearray(message)
    qdcount, ancount, nscount, arcount = struct.unpack_from("!4H", message, 4)
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(message, offset) + 4
    for _ in range(ancount + nscount + arcount):
        offset = _skip_name(message, offset)
        rtype, rclass, _ttl, rdlength = struct.unpack_from("!HHIH", message, offset)
        offset += 10
        if offset + rdlength > len(message):
            raise ValueError("truncated record")
        if (
            rtype == A
            and rclass == IN
            and rdlength == 4
            and message[offset : offset + 4] == LOOPBACK
        ):
            out[offset : offset + 4] = replacement
        offset += rdlength
    return bytes(out)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve_tcp(listen: str, port: int, target: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError as error:
            log.warning("%s:%d -> 127.0.0.1:%d refused: %s", listen, port, target, error)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return await asyncio.start_server(handle, listen, port)


class _DnsRelay(asyncio.DatagramProtocol):
    def __init__(self, target: int, replacement: bytes) -> None:
        self.target = target
        self.replacement = replacement
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: set[asyncio.Future[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        task = asyncio.ensure_future(self._answer(data, addr))
        self.pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self.pending.discard)

    async def _answer(self, query: bytes, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bytes] = loop.create_future()

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, _addr: tuple[str, int]) -> None:
                if not reply.done():
                    reply.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(
            Upstream, remote_addr=("127.0.0.1", self.target)
        )
        try:
            transport.sendto(query)
            answer = await asyncio.wait_for(reply, DNS_TIMEOUT)
        except TimeoutError:
            log.warning("DNS query from %s: no answer from 127.0.0.1:%d", addr[0], self.target)
            return
        finally:
            transport.close()
        if self.transport is not None:
            self.transport.sendto(rewrite_a_records(answer, self.replacement), addr)


def _port_pair(text: str) -> tuple[int, int]:
    listen, _, target = text.partition(":")
    return int(listen), int(target or listen)


async def serve(
    listen: str, tcp: Sequence[tuple[int, int]], dns: Sequence[tuple[int, int]]
) -> None:
    servers = [await _serve_tcp(listen, port, target) for port, target in tcp]
    for port, target in tcp:
        log.info("relaying %s:%d -> 127.0.0.1:%d", listen, port, target)
    replacement = ipaddress.IPv4Address(listen).packed
    for port, target in dns:
        await asyncio.get_running_loop().create_datagram_endpoint(
            functools.partial(_DnsRelay, target, replacement),
            local_addr=(listen, port),
        )
        log.info(
            "answering DNS on %s:%d from 127.0.0.1:%d (127.0.0.1 -> %s)",
            listen,
            port,
            target,
            listen,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="the bridge address")
    parser.add_argument("--tcp", action="append", default=[], type=_port_pair)
    parser.add_argument(
        "--dns", action="append", default=[], type=_port_pair, help="P[:Q]: DNS over UDP"
    )
    args = parser.parse_args(argv)
    if ipaddress.IPv4Address(args.listen).is_loopback:
        parser.error("the relay listens on the bridge address, not on loopback")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(args.listen, args.tcp, args.dns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
