"""A small TCP load balancer on loopback for a local fleet of Basalt nodes.

    python scripts/fleet_lb.py LISTEN_PORT HOST:PORT [HOST:PORT ...]

Each new client connection goes to the next node in turn (round robin); a node that
refuses the connection (stopped, killed, draining) is skipped, so clients keep working
while a node is down. It relays bytes both ways without reading HTTP, so SigV4, TLS,
HTTP/2 and event streams pass through unchanged; a connection stays on its node for
its whole life (HTTP keep-alive clients such as boto3 stick to one node until they
reconnect). LISTEN_PORT 0 picks a free port. The first line of stdout is
`listening on 127.0.0.1:<port>`. Standard library only.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys

CONNECT_TIMEOUT_SECS = 2.0
CHUNK = 64 * 1024


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies one direction until EOF, then half-closes the other side."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def serve(listen_port: int, nodes: list[tuple[str, int]]) -> None:
    turn = itertools.cycle(range(len(nodes)))

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in range(len(nodes)):
            host, port = nodes[next(turn)]
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_SECS)
                break
            except (OSError, asyncio.TimeoutError):
                continue
        if upstream is None:
            client_writer.close()
            return
        node_reader, node_writer = upstream
        await asyncio.gather(relay(client_reader, node_writer), relay(node_reader, client_writer))
        for w in (node_writer, client_writer):
            try:
                w.close()
                await w.wait_closed()
            except (ConnectionError, OSError):
                pass

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: fleet_lb.py LISTEN_PORT HOST:PORT [HOST:PORT ...]")
    nodes = []
    for spec in sys.argv[2:]:
        host, _, port = spec.rpartition(":")
        nodes.append((host or "127.0.0.1", int(port)))
    asyncio.run(serve(int(sys.argv[1]), nodes))


if __name__ == "__main__":
    main()
