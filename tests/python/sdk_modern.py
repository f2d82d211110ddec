"""Connects to trex's admin server with the official Python SDK 2.x in its default (auto) mode,
which probes the stateless era first: prints the negotiated protocol version, then lists the
tools and calls two of them (one that writes, so it is audited) — all without a session.

usage: python sdk_modern.py URL API_KEY     (prints "OK <version>" and exits 0 on success)
"""

import asyncio
import sys

URL, KEY = sys.argv[1], sys.argv[2]


async def main():
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        async with Client(streamable_http_client(URL, http_client=http)) as client:
            version = client.protocol_version
            tools = await client.list_tools()
            names = [t.name for t in tools.tools]
            assert "user-list" in names and "role-create" in names, names
            res = await client.call_tool("user-list", {})
            assert not res.is_error, res
            assert res.structured_content["users"], res
            res = await client.call_tool("role-create", {"name": "from-python-modern"})
            assert not res.is_error, res
            bad = await client.call_tool("role-create", {"name": ""})
            assert bad.is_error, bad
            print(f"OK {version}")


asyncio.run(main())
