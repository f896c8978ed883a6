"""A FastAPI chat app metered through the OpenAI wrapper, runnable offline.

    python examples/chat_app.py

asks the app two questions, as two accounts, and prints what it answers. The model is a
mock transport that answers as OpenAI's chat completions API does; with a real key, make
the client with ``OpenAI()`` instead.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx2
from fastapi import FastAPI, Header
from fastapi.testclient import TestClient
from openai import OpenAI
from pydantic import BaseModel

from creditmeter import CreditMeter
from creditmeter.integrations.fastapi import install
from creditmeter.integrations.openai import metered


class Question(BaseModel):
    text: str


def create_app(meter: CreditMeter, model: OpenAI) -> FastAPI:
    app = FastAPI()
    install(app)  # a refusal is answered with creditmeter's 402 body

    @app.post("/chat")
    def chat(question: Question, x_account: Annotated[str, Header()]) -> dict[str, Any]:
        client = metered(model, meter, account=x_account, feature="llm.chat")
        reply = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": question.text}],
            max_tokens=200,
        )
        return {
            "reply": reply.choices[0].message.content,
            "available": meter.balance(x_account).available,
        }

    return app


def offline_model(request: httpx2.Request) -> httpx2.Response:
    """Answers as OpenAI's chat completions do: it echoes the question, with its usage."""
    question = json.loads(request.content)["messages"][-1]["content"]
    answer = f"You asked: {question}"
    usage = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
    choice = {"index": 0, "message": {"role": "assistant", "content": answer}}
    return httpx2.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-2024-08-06",
            "choices": [{**choice, "finish_reason": "stop"}],
            "usage": usage,
        },
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        meter = CreditMeter(f"sqlite:///{Path(folder) / 'creditmeter.db'}")
        meter.put_feature("llm.chat", rates={"input_tokens": 1, "output_tokens": 2})
        meter.create_account("acme")
        meter.grant("acme", 1_000, source="purchase")
        meter.create_account("broke")
        model = OpenAI(
            api_key="offline",
            http_client=httpx2.Client(transport=httpx2.MockTransport(offline_model)),
        )
        with TestClient(create_app(meter, model)) as app:
            for account in ("acme", "broke"):
                answer = app.post(
                    "/chat", json={"text": "What is a credit?"}, headers={"x-account": account}
                )
                print(answer.status_code, answer.json())
        meter.close()


if __name__ == "__main__":
    main()
