"""Wrappers that meter the AI SDKs people use: OpenAI, Anthropic, LiteLLM (its SDK and
its proxy), and FastAPI endpoints.

Each sits above the library and the HTTP client and works with either: it authorizes an
estimate before the call, settles the response's own usage after it, and releases the
hold when the call fails. Each module imports its SDK, installed with the extra of the
same name (``pip install 'creditmeter[openai]'``); nothing else imports them.
"""
