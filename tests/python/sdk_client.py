"""Drives trex's admin MCP server with the official Python SDK (mcp 1.x or 2.x).

usage: python sdk_client.py URL API_KEY     (prints OK and exits 0 on success)
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
    tools = attr(await session.list_tools(), "tools")
    names = {t.name for t in tools}
    for n in ("user-list", "user-get", "user-create", "api-key-list", "api-key-create", "api-key-revoke",
              "role-create", "session-list", "sso-save", "app-create", "audit-list"):
        assert n in names, f"missing tool {n}: {names}"

    res = await session.call_tool("user-list", {})
    assert not attr(res, "is_error", "isError"), res
    structured = attr(res, "structured_content", "structuredContent")
    assert structured["users"], structured

    res = await session.call_tool("user-create", {"name": "Py", "email": "py@example.com", "role": "user"})
    assert not attr(res, "is_error", "isError"), res
    user = attr(res, "structured_content", "structuredContent")
    assert user["email"] == "py@example.com", user

    res = await session.call_tool("user-create", {"name": "Py", "email": "not-an-email"})
    assert attr(res, "is_error", "isError"), res
    assert "email" in res.content[0].text, res.content[0].text

    # identity tools: a role, assigned to the new user, visible in user-get, audited
    res = await session.call_tool("role-create", {"name": "py-role"})
    role = attr(res, "structured_content", "structuredContent")
    res = await session.call_tool("user-role-assign", {"userId": user["id"], "roleId": role["id"]})
    assert not attr(res, "is_error", "isError"), res
    res = await session.call_tool("user-get", {"userId": user["id"]})
    got = attr(res, "structured_content", "structuredContent")
    assert [r["name"] for r in got["roles"]] == ["py-role"], got
    res = await session.call_tool("audit-list", {"tool": "user-role-assign"})
    entries = attr(res, "structured_content", "structuredContent")["entries"]
    assert entries and entries[0]["outcome"] == "ok", entries

    res = await session.read_resource("trex://plugin-development-guide")
    assert "plugin" in res.contents[0].text.lower()


async def v1():
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(URL, headers=HEADERS) as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.protocolVersion == "2025-11-25", init.protocolVersion
            await exercise(session)


async def v2():
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=HEADERS) as http:
        # mode "auto" (the default) probes the stateless 2026-07-28 era first and must fall back
        async with Client(streamable_http_client(URL, http_client=http)) as client:
            await exercise(client)


version = importlib.metadata.version("mcp")
asyncio.run(v1() if version.startswith("1.") else v2())
print(f"OK mcp {version}")
