"""Model names as the price catalogue (``genai-prices``, its bundled offline snapshot)
knows them: ``gpt-4o-2024-08-06`` is ``gpt-4o``, ``claude-sonnet-4-20250514`` is
``claude-sonnet-4-0``. Only the bundled snapshot is read; nothing is fetched."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def catalogue_model(name: str) -> str | None:
    """``provider:model`` of the catalogue's model that ``name`` refers to, or ``None``."""
    # Imported on first use: the snapshot takes a tenth of a second to load, and a name
    # that a feature lists as it is given never needs it.
    from genai_prices.data_snapshot import get_snapshot

    try:
        provider, model = get_snapshot().find_provider_model(name, None, None, None)
    except LookupError:
        return None
    return f"{provider.id}:{model.id}"


def same_model(a: str, b: str) -> bool:
    """Whether two names refer to one model of the catalogue."""
    known = catalogue_model(a)
    return known is not None and known == catalogue_model(b)
