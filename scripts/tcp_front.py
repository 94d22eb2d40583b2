"""A region's front for the failover benchmark: forwards TCP from 127.0.0.1:PORT to
127.0.0.1:TARGET. Stopping it (SIGSTOP) makes the region silent (connections are
accepted by the kernel and never answered), killing it makes it refuse connections.

Usage: python3 scripts/tcp_front.py PORT TARGET
"""

import asyncio
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port, target):
    async def forward(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
