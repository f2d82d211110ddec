"""Runs one MCP session of the official Python SDK 1.x (session era) with many tool calls:
the node test puts a round-robin proxy in front of three trex nodes, so the calls of the one
session land on every node.

usage: python sdk_many_calls.py URL API_KEY N     (prints "OK N calls" and exits 0 when every call worked)
"""

import asyncio
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

URL, KEY, N = sys.argv[1], sys.argv[2], int(sys.argv[3])


async def main():
    headers = {"Authorization": f"Bearer {KEY}"}
    async with streamablehttp_client(URL, headers=headers) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for i in range(N):
                tool = "user-list" if i % 2 else "cluster-get-status"
                r = await session.call_tool(tool, {})
                assert not r.isError, (i, tool, r)
    print(f"OK {N} calls")


asyncio.run(main())
