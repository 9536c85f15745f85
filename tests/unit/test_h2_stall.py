"""A client that sends no preface, or stops inside a frame, is sent away after the stall timeout.

Driven through the asyncio wrapper over a socketpair, with a small timeout.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from lamina.core.h2_frames import PROTOCOL_ERROR
from lamina.core.h2_protocol import Connection
from tests.unit.h2_peer import PREFACE, Summary, parse, raw, summary

STALL = 0.2
DEADLINE = 10.0  # how long the test waits for the server to act, far above STALL


async def _served(sent: bytes) -> tuple[bytes, bool]:
    """What the server wrote to a client that sent ``sent`` and then nothing, until it closed."""
    ours, theirs = socket.socketpair()
    closed: list[Connection] = []  # on_close runs before the socket closes, so before EOF
    loop = asyncio.get_running_loop()
    await loop.connect_accepted_socket(lambda: Connection(lambda s: None, closed.append, STALL), theirs)
    reader, writer = await asyncio.open_connection(sock=ours)
    writer.write(sent)
    received = await asyncio.wait_for(reader.read(), DEADLINE)  # until EOF: the server closed
    writer.close()
    return received, bool(closed)


@pytest.mark.parametrize("sent", [b"", PREFACE[:5], PREFACE + raw(4, 0, 0) + raw(6, 0, 0, b"\0" * 8)[:11],
                                  PREFACE + raw(4, 0, 0) + raw(1, 0x1, 1, b"")],
                         ids=["no-preface", "part-of-the-preface", "inside-a-frame", "inside-a-header-block"])
def test_a_stalled_client_gets_goaway_and_is_closed(sent: bytes) -> None:
    received, closed = asyncio.run(_served(sent))
    frames = [summary(f) for f in parse(received)]
    assert frames[-1] == ("GOAWAY", 0, PROTOCOL_ERROR)
    assert closed


def test_frames_read_meanwhile_are_progress_not_a_stall() -> None:
    """A big upload often ends a read mid-frame; only a stall without a whole frame is timed out.

    The timer's expiry is driven by hand (``_stalled``), so nothing here waits for time.
    """
    async def run() -> list[Summary]:
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        transport, conn = await loop.connect_accepted_socket(
            lambda: Connection(lambda s: None, lambda c: None, STALL), theirs)
        ping = raw(6, 0, 0, b"\0" * 8)
        conn.data_received(PREFACE + raw(4, 0, 0) + ping[:4])  # mid-frame: the timer starts
        conn._stall_timer.cancel()
        conn.data_received(ping[4:] + ping[:4])  # a whole PING read, and mid-frame again
        conn._stalled()
        assert not conn.core.terminated  # a frame came since the timer started: measured again
        conn._stall_timer.cancel()
        conn._stalled()  # no frame since: the stall is real
        assert conn.core.terminated
        ours.setblocking(False)
        received = await asyncio.wait_for(loop.sock_recv(ours, 65536), DEADLINE)
        transport.close()
        ours.close()
        return [summary(f) for f in parse(received)]
    assert asyncio.run(run())[-2:] == [("PING", 0, ("ACK",)), ("GOAWAY", 0, PROTOCOL_ERROR)]
