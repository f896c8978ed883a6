"""An account's notification preferences."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from creditmeter.api.schemas.common import Body
from creditmeter.core.notifications import MAX_EMAIL, MAX_EMAILS, NotificationPreferences

Email = Annotated[str, Field(min_length=3, max_length=MAX_EMAIL)]
Channel = Annotated[str, Field(min_length=1, max_length=20)]


class NotificationPreferencesPut(Body):
    emails: list[Email] = Field(
        default_factory=list,
        max_length=MAX_EMAILS,
        description="The billing addresses that email notifications go to.",
    )
    channels: dict[Annotated[str, Field(max_length=100)], list[Channel]] = Field(
        default_factory=dict,
        description='Per event type, or `"*"` for the others, the channels it is sent on: '
        '`email`, `webhook`, or none (`[]`). `"*"` is both unless given.',
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "emails": ["billing@acme.example"],
                    "channels": {"*": ["email", "webhook"], "balance.low": ["webhook"]},
                }
            ]
        }
    )


class NotificationPreferencesOut(BaseModel):
    account_id: str
    emails: list[str]
    channels: dict[str, list[str]]
    updated_at: datetime | None = Field(description="Null while the defaults apply.")

    @classmethod
    def of(cls, p: NotificationPreferences) -> NotificationPreferencesOut:
        return cls(
            account_id=p.account_id,
            emails=list(p.emails),
            channels={k: list(v) for k, v in p.channels.items()},
            updated_at=p.updated_at,
        )
