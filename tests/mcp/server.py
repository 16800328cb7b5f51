"""An MCP server for agentsim's tests: a small order desk with three tools, built on the official
Python SDK. `python server.py` serves stdio; `python server.py streamable-http` serves
http://127.0.0.1:$PORT/mcp."""

import os
import sys

from mcp.server.fastmcp import FastMCP

desk = FastMCP("order-desk", host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="WARNING")

ORDERS = {"A1": 84.5, "B7": 12.0}


@desk.tool()
def lookup_order(order_id: str) -> str:
    """Look up an order by its id: items, status and total."""
    total = ORDERS.get(order_id)
    if total is None:
        raise ValueError(f"no order {order_id}")
    return f"order {order_id}: 2 items, shipped, total {total:.2f} USD"


@desk.tool()
def refund(order_id: str, amount_usd: float) -> str:
    """Refund part or all of an order."""
    return f"refunded {amount_usd:.2f} USD on order {order_id}"


@desk.tool()
def search_docs(query: str) -> str:
    """Search the help centre."""
    return f"3 articles about {query}: returns policy, shipping times, warranty"


if __name__ == "__main__":
    desk.run(transport=sys.argv[1] if len(sys.argv) > 1 else "stdio")
