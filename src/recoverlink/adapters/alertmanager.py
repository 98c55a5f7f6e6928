"""Parse Alertmanager webhook bodies (payload version 4) into domain values.

Lenient with what Alertmanager adds over time (unknown fields are ignored), strict with what we
rely on: a missing or mistyped required field is a `PayloadInvalid` naming the field path.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recoverlink.domain.alerts import Alert, AlertPolicy, AlertStatus, Notification, flag_alert
from recoverlink.domain.enrichment import AlertFacts
from recoverlink.domain.errors import PayloadInvalid
from recoverlink.domain.json_text import parse_json

# Alertmanager sends Go's zero time for "no end yet".
_GO_ZERO_YEAR = 1


def _as_utc(value: datetime) -> datetime:
    """Naive times are read as UTC (Alertmanager always sends `Z`); aware ones are converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # year 1 with a positive offset falls before datetime.min
        raise ValueError("time is out of range") from exc


class AlertPayload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=False)

    status: AlertStatus  # the enum itself, validated in pydantic-core
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    @field_validator("starts_at", "ends_at", mode="before")
    @classmethod
    def _rfc3339_text(cls, value: object) -> object:
        # Alertmanager sends RFC 3339 strings; a number here is a broken sender, not a Unix time.
        if value is not None and not isinstance(value, str):
            raise ValueError("expected an RFC 3339 time string")
        return value

    @field_validator("starts_at")
    @classmethod
    def _starts_utc(cls, value: datetime) -> datetime:
        return _as_utc(value)

    @field_validator("ends_at")
    @classmethod
    def _ends_utc(cls, value: datetime | None) -> datetime | None:
        if value is None or value.year == _GO_ZERO_YEAR:
            return None
        return _as_utc(value)


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: AlertStatus  # the enum itself, validated in pydantic-core
    alerts: list[AlertPayload]
    receiver: str = ""
    group_key: str = Field(default="", alias="groupKey")
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    truncated_alerts: int = Field(default=0, ge=0, alias="truncatedAlerts")


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode a request body as a JSON object, or say exactly why it is not one."""
    if not body.strip():
        raise PayloadInvalid("request body is empty; expected an Alertmanager webhook JSON object")
    try:
        document = parse_json(body)
    except UnicodeDecodeError as exc:
        raise PayloadInvalid(f"request body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise PayloadInvalid(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(document, dict):
        raise PayloadInvalid(f"expected a JSON object at the top level, got {type(document).__name__}")
    return document


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def parse_payload(document: dict[str, Any]) -> WebhookPayload:
    """Validate a decoded body; the first error names the field path (`alerts.2.startsAt`)."""
    try:
        return WebhookPayload.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = _field_path(first["loc"])
        raise PayloadInvalid(f"{path}: {first['msg']}", field=path) from exc


def to_notification(payload: WebhookPayload, policy: AlertPolicy) -> Notification:
    """Turn a validated payload into a domain notification, each alert flagged by the policy."""
    alerts = tuple(_to_alert(a, policy) for a in payload.alerts)
    return Notification(
        receiver=payload.receiver,
        status=payload.status,
        group_key=payload.group_key,
        group_labels=payload.group_labels,
        common_labels=payload.common_labels,
        common_annotations=payload.common_annotations,
        external_url=payload.external_url,
        truncated_alerts=payload.truncated_alerts,
        alerts=alerts,
    )


def _to_alert(item: AlertPayload, policy: AlertPolicy) -> Alert:
    alert = Alert(
        fingerprint=item.fingerprint,
        status=item.status,
        labels=item.labels,
        annotations=item.annotations,
        starts_at=item.starts_at,
        ends_at=item.ends_at,
        generator_url=item.generator_url,
    )
    flags = flag_alert(alert, policy)
    return dataclasses.replace(alert, flags=flags) if flags else alert  # most alerts have none


class SingleAlertPayload(BaseModel):
    """One alert as an SRE writes it for `explain` or a rule test: labels, maybe annotations."""

    model_config = ConfigDict(extra="ignore")

    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    fingerprint: str = ""
    status: Literal["firing", "resolved"] = "firing"


def alerts_for_explain(document: dict[str, Any]) -> list[AlertFacts]:
    """A whole webhook payload (every alert in it) or a single alert, as enrichment input."""
    if "alerts" in document:
        payload = parse_payload(document)
        return [AlertFacts(a.labels, a.annotations, a.fingerprint, a.status.value) for a in payload.alerts]
    try:
        single = SingleAlertPayload.model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        path = _field_path(first["loc"])
        raise PayloadInvalid(f"{path}: {first['msg']}", field=path) from exc
    return [AlertFacts(single.labels, single.annotations, single.fingerprint, single.status)]
