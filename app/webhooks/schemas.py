"""Webhook subscriptions and deliveries as the API takes and gives them (DESIGN §9)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.instants import InstantOut
from app.events.outbox import EventType
from app.webhooks.models import DeliveryStatus


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/privacy",
                    "events": ["dsar.created", "dsar.due_soon", "consent.changed"],
                    "description": "CRM sync",
                }
            ]
        },
    )

    url: str = Field(
        min_length=8,
        max_length=2000,
        description="http(s); private-network and loopback targets are refused unless the "
        "host is in the WEBHOOK_ALLOW_HOSTS setting",
    )
    events: list[EventType] = Field(min_length=1, max_length=20)
    description: str | None = Field(default=None, max_length=500)

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class WebhookRead(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    created_at: InstantOut
    disabled_at: InstantOut | None = Field(
        default=None,
        description="Set when the receiver answered 410 Gone: nothing more is sent to it "
        "(a `webhook.disabled` event says so); subscribe again to resume",
    )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="`whsec_` + base64 signing key. Shown once: store it to verify "
        "`webhook-signature` (Standard Webhooks)",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookSecretRotated(BaseModel):
    id: uuid.UUID
    secret: str = Field(
        description="The new `whsec_…` signing secret, shown once",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
    previous_secret_valid_until: InstantOut | None = Field(
        description="Until then every delivery carries two signatures (`v1,<new> v1,<old>`): "
        "receivers switch to the new secret meanwhile. Null when WEBHOOK_SECRET_OVERLAP_HOURS "
        "is 0 (only the new secret signs from now on)"
    )


class WebhookList(BaseModel):
    items: list[WebhookRead]
    next_cursor: str | None


class AttemptRead(BaseModel):
    attempt: int
    at: InstantOut
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered")
    error: str | None = Field(description="Why the attempt failed without an HTTP status")
    duration_ms: int


class WebhookDeliveryRead(BaseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID
    message_id: str = Field(description="The `webhook-id` header: the same on every attempt")
    event_id: int
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: InstantOut | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: InstantOut | None
    created_at: InstantOut
    attempts: list[AttemptRead]


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryRead]
    next_cursor: str | None
