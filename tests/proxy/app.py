"""A small support agent on the official `openai` client: the kind of app pointed at
`agentsim proxy`. It answers questions with a tool loop, streamed or not, and prints what it got
as one JSON object, so the tests can compare runs.

    OPENAI_BASE_URL=http://127.0.0.1:8089/v1 python app.py agent|stream|retry|cut
"""

import json
import os
import sys
import time

from openai import OpenAI

client = OpenAI(
    base_url=os.environ["OPENAI_BASE_URL"],
    api_key=os.environ.get("OPENAI_API_KEY", "sk-test-not-a-real-key"),
    max_retries=int(os.environ.get("APP_MAX_RETRIES", "2")),
)
SESSION = os.environ.get("APP_SESSION")
HEADERS = {"x-agentsim-session": SESSION} if SESSION else None
MODEL = "gpt-4o-mini"
TOOLS = [{
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "Look up an order by its id",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}]


def lookup_order(args):
    return {"order_id": args.get("order_id"), "status": "shipped"}


def ask(messages, stream, tools):
    extra = {"tools": TOOLS} if tools else {}
    if not stream:
        reply = client.chat.completions.create(model=MODEL, messages=messages, extra_headers=HEADERS, **extra)
        message = reply.choices[0].message
        calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]
        return message.content, calls
    text, calls = "", {}
    chunks = client.chat.completions.create(
        model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True},
        extra_headers=HEADERS, **extra)
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = call.id or entry["id"]
            if call.function and call.function.name:
                entry["name"] = call.function.name
            if call.function and call.function.arguments:
                entry["arguments"] += call.function.arguments
    return text or None, [(c["id"], c["name"], c["arguments"]) for c in calls.values()]


def agent(question, stream=False, tools=True):
    messages = [{"role": "system", "content": "You are a support agent."}, {"role": "user", "content": question}]
    steps = []
    for _ in range(4):
        text, calls = ask(messages, stream, tools)
        if not calls:
            return {"answer": text, "steps": steps}
        messages.append({"role": "assistant", "content": text, "tool_calls": [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls]})
        for call_id, name, arguments in calls:
            result = lookup_order(json.loads(arguments))
            steps.append({"tool": name, "arguments": json.loads(arguments)})
            messages.append({"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)})
    return {"answer": None, "steps": steps}


def main(mode):
    out = {}
    if mode == "agent":
        questions = os.environ.get("APP_QUESTIONS", "Where is order 17?|Where is order 42?").split("|")
        out["answers"] = [agent(q) for q in questions]
    elif mode == "stream":
        out["with_tools"] = agent("Where is order 9?", stream=True)
        out["plain"] = agent("Tell me a story.", stream=True, tools=False)
    elif mode == "retry":
        started = time.monotonic()
        out["answer"] = agent("Hello there.", tools=False)
        out["elapsed_s"] = time.monotonic() - started
    elif mode == "cut":
        try:
            out["answer"] = agent("Tell me a long story.", stream=True, tools=False)
        except Exception as error:  # the SDK's error for a stream that breaks off
            out["error"] = type(error).__name__
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
