"""Installs, calls and removes the example plugin through trex's admin server with the official
Python SDK (mcp 1.x or 2.x), and checks the SDK is told the tool list changed each time (in
the session era on its stream; in the stateless era, which 2.x picks, on subscriptions/listen).

usage: python sdk_plugins.py URL API_KEY PLUGIN_DIR     (prints OK and exits 0 on success)
"""

import asyncio
import importlib.metadata
import sys

import anyio

URL, KEY, PLUGIN = sys.argv[1], sys.argv[2], sys.argv[3]
HEADERS = {"Authorization": f"Bearer {KEY}"}
changed = anyio.Event()
seen = []


async def on_message(message):
    inner = getattr(message, "root", message)
    method = getattr(inner, "method", None) or getattr(getattr(inner, "root", None), "method", None)
    if method == "notifications/tools/list_changed" or "ToolListChanged" in type(inner).__name__:
        seen.append(method)
        changed.set()


def attr(obj, *names):
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)
    raise AttributeError(names)


async def wait_changed():
    global changed
    with anyio.fail_after(15):
        await changed.wait()
    changed = anyio.Event()


async def names(session):
    return {t.name for t in attr(await session.list_tools(), "tools")}


async def exercise(session):
    assert "hello-greet" not in await names(session)
    res = await session.call_tool("plugin-install", {"packageSpec": PLUGIN})
    assert not attr(res, "is_error", "isError"), res
    await wait_changed()
    assert "hello-greet" in await names(session)
    res = await session.call_tool("hello-greet", {"name": "Python"})
    assert not attr(res, "is_error", "isError"), res
    out = attr(res, "structured_content", "structuredContent")
    assert out["message"] == "Hello, Python!", out
    res = await session.call_tool("hello-greet", {"name": 42})
    assert attr(res, "is_error", "isError"), res
    res = await session.read_resource("trex://plugin-development-guide")
    assert "package.json" in res.contents[0].text
    res = await session.call_tool("plugin-uninstall", {"packageName": "hello"})
    assert not attr(res, "is_error", "isError"), res
    await wait_changed()
    assert "hello-greet" not in await names(session)
    assert len(seen) >= 2, seen


async def v1():
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(URL, headers=HEADERS) as (read, write, _):
        async with ClientSession(read, write, message_handler=on_message) as session:
            await session.initialize()
            await exercise(session)


async def v2():
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=HEADERS) as http:
        async with Client(streamable_http_client(URL, http_client=http), message_handler=on_message) as client:
            if client.protocol_version < "2026-07-28":
                await exercise(client)
                return
            # the stateless era: change notifications come on a subscriptions/listen stream
            async with client.listen(tools_list_changed=True) as sub:
                async def watch():
                    async for _event in sub:
                        seen.append("notifications/tools/list_changed")
                        changed.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch)
                    await exercise(client)
                    tg.cancel_scope.cancel()


version = importlib.metadata.version("mcp")
asyncio.run(v1() if version.startswith("1.") else v2())
print(f"OK mcp {version}")
