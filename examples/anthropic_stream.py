"""A streamed Anthropic message, metered, runnable offline.

    python examples/anthropic_stream.py

streams a reply and prints it, then what the hold reserved and what the reply cost. The
model is a mock transport that streams as Anthropic's messages API does; with a real key,
make the client with ``Anthropic()`` instead.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import httpx2
from anthropic import Anthropic

from creditmeter import CreditMeter
from creditmeter.integrations.anthropic import metered

MODEL = "claude-sonnet-4-20250514"


def offline_model(request: httpx2.Request) -> httpx2.Response:
    """Streams three words, with the usage Anthropic reports at the start and the end."""
    start: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "cache_read_input_tokens": 100, "output_tokens": 1},
    }
    events = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        *[
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": word},
                },
            )
            for word in ("Credits ", "are ", "prepaid.")
        ],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 6},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return httpx2.Response(
        200, content=body.encode(), headers={"content-type": "text/event-stream"}
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        meter = CreditMeter(f"sqlite:///{Path(folder) / 'creditmeter.db'}")
        meter.put_feature(
            "llm.chat", rates={"input_tokens": 1, "cached_tokens": "0.1", "output_tokens": 5}
        )
        meter.create_account("acme")
        meter.grant("acme", 10_000, source="purchase")
        http = httpx2.Client(transport=httpx2.MockTransport(offline_model))
        client = metered(
            Anthropic(api_key="offline", http_client=http),
            meter,
            account="acme",
            feature="llm.chat",
        )
        stream = client.messages.create(
            model="claude-sonnet-4",
            max_tokens=300,
            messages=[{"role": "user", "content": "What are credits?"}],
            stream=True,
        )
        with stream:
            for event in stream:
                if event.type == "message_start":
                    print("held:", meter.balance("acme").held)
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    print(event.delta.text, end="")
        [record] = meter.usage("acme").data
        print(f"\ncharged: {record.credits} for {dict(record.quantities)} on {record.model}")
        meter.close()


if __name__ == "__main__":
    main()
