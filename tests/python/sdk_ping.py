"""Connects to trex's admin server with the official Python SDK (mcp 1.x or 2.x) and an API key,
lists the tools and calls `cluster-get-status`: the key works. Used by the browser test to
check a key made on the admin page, and that it is refused once revoked there.

usage: python sdk_ping.py URL API_KEY     (prints OK and exits 0 when the key works; exits 1 otherwise)
"""

import asyncio
import importlib.metadata
import sys

URL, KEY = sys.argv[1], sys.argv[2]
HEADERS = {"Authorization": f"Bearer {KEY}"}


async def exercise(session):
    tools = await session.list_tools()
    names = [t.name for t in tools.tools]
    assert "cluster-get-status" in names, names
    await session.call_tool("cluster-get-status", {})


async def v1():
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(URL, headers=HEADERS) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await exercise(session)


async def v2():
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=HEADERS) as http:
        async with Client(streamable_http_client(URL, http_client=http)) as client:
            await exercise(client)


version = importlib.metadata.version("mcp")
try:
    asyncio.run(v1() if version.startswith("1.") else v2())
except BaseException as e:  # the SDK wraps a 401 in exception groups
    print(f"REFUSED {type(e).__name__}: {e}")
    sys.exit(1)
print(f"OK mcp {version}")
