"""Drives trex's migrations MCP server with the official Python SDK (mcp 1.x or 2.x): defines a
migration of the registered SQLite database `app`, runs it in test mode with wait=true and a
progress callback, and checks that progress arrived and the report is whole.

usage: python sdk_migrations.py URL API_KEY     (prints OK and exits 0 on success)
"""

import asyncio
import importlib.metadata
import sys

URL, KEY = sys.argv[1], sys.argv[2]
HEADERS = {"Authorization": f"Bearer {KEY}"}


def attr(obj, *names):
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    raise AttributeError(names)


async def exercise(session):
    res = await session.call_tool("define_migration", {
        "id": "py-nick",
        "interlays": [{"endpoint": "app"}],
        "data": {"type": "sql", "up": "ALTER TABLE users ADD COLUMN nick TEXT; UPDATE users SET nick = 'n';"},
        "apis": [{"id": "nicks", "query": "SELECT nick FROM users"}],
    })
    assert not attr(res, "is_error", "isError"), res
    seen = []

    async def progress(p, total, message):
        seen.append((p, total, message))

    res = await session.call_tool("run_migration", {"migration_id": "py-nick", "mode": "test", "wait": True},
                                  progress_callback=progress)
    assert not attr(res, "is_error", "isError"), res
    run = attr(res, "structured_content", "structuredContent")
    assert run["state"] == "completed", run
    report = run["targets"][0]["report"]
    assert report["statements"] == 2 and report["apis"][0]["ok"], report
    assert seen, "no progress notifications"
    assert any(m and "app" in m for _, _, m in seen), seen
    res = await session.call_tool("run_migration", {"migration_id": "py-nick", "mode": "migrate"},
                                  progress_callback=progress)
    run = attr(res, "structured_content", "structuredContent")
    assert run["state"] == "completed", run


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
asyncio.run(v1() if version.startswith("1.") else v2())
print(f"OK mcp {version}")
