"""LiteLLM calls, metered, runnable offline.

    python examples/litellm_chat.py

asks one question plainly and one streamed, prints what each was charged, then shows an
account without credits refused before LiteLLM is called. Offline, the model is
LiteLLM's own ``mock_response=`` (which reports a usage of its own making); with a
provider's key, drop it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from creditmeter import CreditMeter, InsufficientCredits

QUESTION = [{"role": "user", "content": "What are credits?"}]
ANSWER = "Credits are prepaid."


async def ask(meter: CreditMeter) -> None:
    from creditmeter.integrations.litellm import metered

    llm = metered(meter, account="acme", feature="llm.chat")
    reply = await llm.acompletion(
        model="openai/gpt-4o-mini", messages=QUESTION, max_tokens=200, mock_response=ANSWER
    )
    print(reply.choices[0].message.content)
    stream = await llm.acompletion(
        model="openai/gpt-4o-mini",
        messages=QUESTION,
        max_tokens=200,
        stream=True,
        mock_response=ANSWER,
    )
    async for chunk in stream:
        print("".join(choice.delta.content or "" for choice in chunk.choices), end="")
    print()
    for record in reversed(meter.usage("acme").data):
        print(f"charged: {record.credits} for {dict(record.quantities)} on {record.model}")
    broke = metered(meter, account="broke", feature="llm.chat")
    try:
        await broke.acompletion(model="gpt-4o-mini", messages=QUESTION, mock_response=ANSWER)
    except InsufficientCredits as refused:
        print(f"refused: {refused.code}, {refused.required} needed, {refused.available} available")


def main() -> None:
    # LiteLLM reads its bundled model-cost map rather than fetching one on import.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory() as folder:
        meter = CreditMeter(f"sqlite:///{Path(folder) / 'creditmeter.db'}")
        meter.put_feature("llm.chat", rates={"input_tokens": 1, "output_tokens": 4})
        meter.create_account("acme")
        meter.grant("acme", 10_000, source="purchase")
        meter.create_account("broke")
        meter.grant("broke", 10, source="purchase")
        asyncio.run(ask(meter))
        meter.close()


if __name__ == "__main__":
    main()
