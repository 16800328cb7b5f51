"""An MCP client for agentsim's tests, on the official Python SDK: it initializes, lists the
tools, makes the calls in CLIENT_CALLS (a JSON list of [tool, arguments]) and prints what it saw
as one JSON document. A client that hears `notifications/tools/list_changed` lists the tools again
and, when CLIENT_ADAPT=1, retries a refused call with the arguments renamed to the new schema.
When CLIENT_RECONNECT=1, a call that finds its session terminated opens a new session and is
made again there.

    python client.py stdio COMMAND ARGS...
    python client.py http URL
"""

import asyncio
import json
import os
import sys
from datetime import timedelta

from mcp import ClientSession, McpError, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

CALLS = json.loads(os.environ.get("CLIENT_CALLS", '[["lookup_order", {"order_id": "A1"}]]'))
TIMEOUT = timedelta(seconds=float(os.environ.get("CLIENT_TIMEOUT", "10")))
ADAPT = os.environ.get("CLIENT_ADAPT") == "1"
RECONNECT = os.environ.get("CLIENT_RECONNECT") == "1"


def schema_names(tools):
    return {t.name: sorted((t.inputSchema or {}).get("properties", {})) for t in tools}


async def drive(read, write, seen, calls):
    """Makes `calls` in one session; returns the calls left when the session was terminated."""
    changed = asyncio.Event()

    async def on_message(message):
        if isinstance(message, types.ServerNotification):
            seen["notifications"].append(message.root.method)
            if message.root.method == "notifications/tools/list_changed":
                changed.set()

    async with ClientSession(read, write, message_handler=on_message, read_timeout_seconds=TIMEOUT) as session:
        init = await session.initialize()
        seen["server"] = init.serverInfo.name
        seen["sessions"] = seen.get("sessions", 0) + 1
        tools = (await session.list_tools()).tools
        seen["tools"] = schema_names(tools)
        for index, (tool, arguments) in enumerate(calls):
            record = await call(session, tool, arguments)
            if RECONNECT and record.get("error", {}).get("message") == "Session terminated":
                seen["calls"].append(record)
                return calls[index:]
            await asyncio.sleep(0)
            if changed.is_set():
                changed.clear()
                tools = (await session.list_tools()).tools
                record["relisted"] = schema_names(tools)
                new = record["relisted"].get(tool)
                if ADAPT and new is not None and "error" in record:
                    renamed = {n: arguments[o] for o in arguments for n in new if n.startswith(o)}
                    record["retried"] = await call(session, tool, renamed)
            seen["calls"].append(record)
    return []


async def call(session, tool, arguments):
    try:
        result = await session.call_tool(tool, arguments, read_timeout_seconds=TIMEOUT)
        texts = [c.text for c in result.content if c.type == "text"]
        return {"tool": tool, "is_error": bool(result.isError), "text": texts}
    except McpError as e:
        return {"tool": tool, "error": {"code": e.error.code, "message": e.error.message}}
    except Exception as e:  # noqa: BLE001 - the transcript says what broke
        return {"tool": tool, "exception": type(e).__name__, "message": str(e)[:200]}


async def main():
    seen = {"notifications": [], "calls": []}
    try:
        await connect(sys.argv[1], seen)
    except BaseException as e:  # noqa: BLE001 - a transport that dies takes the client with it
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        seen["client_died"] = {"exception": type(e).__name__, "message": str(e)[:200]}
    print(json.dumps(seen, sort_keys=True))


async def connect(mode, seen):
    if mode == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            await drive(read, write, seen, CALLS)
    else:
        left = CALLS
        while True:
            async with streamablehttp_client(sys.argv[2]) as (read, write, _):
                left = await drive(read, write, seen, left)
            if not left:
                break


asyncio.run(main())
