"""The OpenAPI 3.0 document of every /api/v1 endpoint (served without auth at GET /api/v1/openapi.json).

Built in code from the same enums the API validates against, so a new state, milestone or priority
cannot drift from the document. The contract test runs schemathesis against it and checks that every
/api/v1 route of the app is described here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from recoverlink import __version__
from recoverlink.domain.alerts import AlertFlag
from recoverlink.domain.bounds import MAX_BIGINT
from recoverlink.domain.itsm import IncidentStatus
from recoverlink.domain.outbox import JobState
from recoverlink.domain.priority import PRIORITIES, UNKNOWN
from recoverlink.domain.recovery_state import Milestone, RecoveryState

Schema = dict[str, Any]
# What the store can keep: no NUL (PostgreSQL text), and for free text at least one non-blank.
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK = r"^[^\u0000]*[^\u0000\s][^\u0000]*$"

STRING: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
INT: Schema = {"type": "integer"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": STRING}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"allOf": [schema], "nullable": True}
    return {**schema, "nullable": True}


def obj(properties: dict[str, Schema], optional: tuple[str, ...] = (), **extra: Any) -> Schema:
    """An object schema whose properties are all required except `optional`."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "properties": properties, "required": required, **extra}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def text(max_length: int, pattern: str = NOT_BLANK) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": pattern}


def _error() -> Schema:
    detail = obj(
        {
            "code": {**STRING, "description": "stable kebab-case code, e.g. payload-invalid"},
            "message": STRING,
            "field": {**STRING, "description": "the offending field or query argument, dotted"},
            "request_id": STRING,
            "current": {**STRING, "description": "transition-not-allowed: the recovery's state"},
            "allowed": {
                **array(STRING),
                "description": "transition-not-allowed: the targets the recovery can be moved to",
            },
        },
        optional=("field", "request_id", "current", "allowed"),
    )
    return obj({"error": detail})


def _enrichment() -> Schema:
    """The stored enrichment record of an alert; older records may lack newer keys."""
    optional_string = nullable(STRING)
    properties: dict[str, Schema] = {
        name: optional_string
        for name in (
            "ruleset_version", "service", "service_ref", "owner", "owner_source", "tier", "system",
            "runbook_url", "dashboard_url", "verified_by", "priority", "correlation_key", "resolution",
        )
    }  # fmt: skip
    properties.update(
        {name: array(STRING) for name in ("depends_on", "journeys", "segments", "impact_sources")}
    )
    properties.update(
        {name: array(STRING) for name in ("matched_rules", "misses", "template_errors", "actions")}
    )
    properties.update(
        fields=STRING_MAP,
        labels=STRING_MAP,
        itsm=STRING_MAP,
        impact=nullable(INT),
        urgency=nullable(INT),
        reopen_window_seconds={"type": "number"},
        stale_after_seconds={"type": "number"},
        storm=nullable({"type": "object"}),
    )
    return {"type": "object", "properties": properties}


def _recovery() -> Schema:
    return obj(
        {
            "id": INT,
            "title": STRING,
            "state": ref("RecoveryState"),
            "service": nullable(STRING),
            "team": nullable(STRING),
            "owner": nullable({**STRING, "description": "the owner team, once known"}),
            "priority": STRING,
            "correlation_key": STRING,
            "opened_at": TIME,
            "state_changed_at": TIME,
            "milestones": {
                "type": "object",
                "description": f"milestone -> when it was reached: {', '.join(m.value for m in Milestone)}",
                "additionalProperties": TIME,
            },
            "reopen_count": INT,
            "escalation_bounces": INT,
            "storm": {"type": "boolean"},
            "storm_episodes": INT,
            "symptoms": INT,
            "linked_to": nullable(INT),
            "workaround": nullable(STRING),
            "public_message": nullable(STRING),
            "impact": _impact(),
            "incident": nullable(_incident()),
            "alert_counts": obj({"firing": INT, "resolved": INT}),
        }
    )


def _impact() -> Schema:
    statuses = ["confirmed", "unknown", "pending", "not_seen", "no_sources"]
    return obj(
        {
            "status": {"type": "string", "enum": statuses, "description": "what the impact sources say"},
            "facts": {
                "type": "object",
                "description": "fact kind (segments, regions, channels, queues, journeys, intents) -> values",
                "additionalProperties": array(STRING),
            },
            "notes": array({**STRING, "description": "e.g. impact unknown: <source> <error>"}),
            "sources": {
                "type": "object",
                "description": "what each source said last: status, counts, facts, breaches, verification",
                "additionalProperties": {"type": "object"},
            },
        }
    )


def _incident() -> Schema:
    statuses = ["pending", "unknown", *(s.value for s in IncidentStatus)]
    return obj(
        {
            "system": {"type": "string", "enum": ["servicenow", "jira", "rt"]},
            "status": {"type": "string", "enum": statuses, "description": "pending until it is created"},
            "id": STRING,
            "number": {**STRING, "description": "INC0010002, OPS-154, 12"},
            "url": nullable(STRING),
            "last_error": nullable({**STRING, "description": "pending: why creating it has not worked yet"}),
        },
        optional=("id", "number", "url", "last_error"),
    )


def _job() -> Schema:
    return obj(
        {
            "id": INT,
            "kind": {**STRING, "description": "impact.lookup, impact.verify, recovery.follow_up"},
            "state": {"type": "string", "enum": [s.value for s in JobState]},
            "recovery_id": nullable(INT),
            "idempotency_key": STRING,
            "due_at": {**TIME, "description": "when it may run next (running: when its lease expires)"},
            "attempts": INT,
            "max_attempts": INT,
            "claimed_by": nullable(STRING),
            "last_reason": nullable(STRING),
            "last_error": nullable(STRING),
            "result": nullable({"type": "object"}),
            "payload": {"type": "object"},
            "created_at": TIME,
            "updated_at": TIME,
            "first_started_at": nullable(TIME),
            "finished_at": nullable(TIME),
        }
    )


def _recovery_detail() -> Schema:
    alert = obj(
        {
            "id": INT,
            "fingerprint": STRING,
            "status": {"type": "string", "enum": ["firing", "resolved"]},
            "labels": STRING_MAP,
            "starts_at": TIME,
            "ends_at": nullable(TIME),
            "last_seen_at": TIME,
            "role": {"type": "string", "enum": ["member", "symptom", "storm"]},
            "stale": {"type": "boolean", "description": "firing, not re-sent for stale_after"},
        }
    )
    audit = obj(
        {
            "at": TIME,
            "source": {"type": "string", "enum": ["alertmanager", "itsm", "operator", "worker"]},
            "actor": STRING,
            "kind": STRING,
            "from_state": nullable(STRING),
            "to_state": nullable(STRING),
            "details": {"type": "object"},
        }
    )
    extra = obj(
        {
            "alerts": array(alert),
            "enrichment": nullable(ref("Enrichment")),
            "timeline": array(audit),
        }
    )
    return {"allOf": [ref("Recovery"), extra]}


def _alert_episode() -> Schema:
    return obj(
        {
            "id": INT,
            "fingerprint": STRING,
            "starts_at": TIME,
            "status": {"type": "string", "enum": ["firing", "resolved"]},
            "ends_at": nullable(TIME),
            "labels": STRING_MAP,
            "annotations": STRING_MAP,
            "generator_url": STRING,
            "flags": array({"type": "string", "enum": [f.value for f in AlertFlag]}),
            "first_seen_at": TIME,
            "last_seen_at": TIME,
            "resolved_at": nullable(TIME),
            "enrichment": nullable(ref("Enrichment")),
        }
    )


def _explain_request() -> Schema:
    status = {"type": "string", "enum": ["firing", "resolved"]}
    single = obj(
        {"labels": STRING_MAP, "annotations": STRING_MAP, "fingerprint": STRING, "status": status},
        optional=("annotations", "fingerprint", "status"),
        description="one alert, as an SRE writes it",
    )
    alert = obj(
        {
            "status": status,
            "labels": STRING_MAP,
            "annotations": STRING_MAP,
            "startsAt": TIME,
            "endsAt": TIME,
            "generatorURL": STRING,
            "fingerprint": {"type": "string", "minLength": 1, "maxLength": 64},
        },
        optional=("annotations", "endsAt", "generatorURL"),
    )
    webhook = obj(
        {"version": {"type": "string", "enum": ["4"]}, "status": status, "alerts": array(alert)},
        description="an Alertmanager webhook payload (version 4); other keys are ignored",
    )
    return {"anyOf": [webhook, single]}


def _explain_response() -> Schema:
    step = obj(
        {
            "kind": {"type": "string", "enum": ["rule", "selector", "service-label"]},
            "name": STRING,
            "matched": {"type": "boolean"},
            "reason": STRING,
            "source": nullable(STRING),
        }
    )
    result = obj({"labels": STRING_MAP, "steps": array(step), "enrichment": ref("Enrichment")})
    return obj({"ruleset_version": STRING, "alerts": array(result)})


def _schemas(teams: tuple[str, ...]) -> dict[str, Schema]:
    optional_text = nullable(text(10000))
    owner = {"type": "string", "enum": list(teams)} if teams else text(255)
    return {
        "Error": _error(),
        "RecoveryState": {"type": "string", "enum": [s.value for s in RecoveryState]},
        "Enrichment": _enrichment(),
        "Recovery": _recovery(),
        "RecoveryDetail": _recovery_detail(),
        "RecoveryPage": obj(
            {
                "items": array(ref("Recovery")),
                "next_cursor": nullable({**STRING, "description": "pass as `cursor` for the next page"}),
            }
        ),
        "TransitionRequest": obj(
            {
                "target": ref("RecoveryState"),
                "reason": text(2000),
                "workaround": {**optional_text, "description": "stored when given"},
                "public_message": {**optional_text, "description": "stored when given"},
            },
            optional=("workaround", "public_message"),
            additionalProperties=False,
        ),
        "RecoveryPatch": obj(
            {
                "owner": {**owner, "description": "a catalog team; a change counts an escalation bounce"},
                "workaround": {**optional_text, "description": "null clears it"},
                "public_message": {**optional_text, "description": "null clears it"},
            },
            optional=("owner", "workaround", "public_message"),
            additionalProperties=False,
            minProperties=1,
        ),
        "AlertEpisode": _alert_episode(),
        "AlertPage": obj({"items": array(ref("AlertEpisode")), "next_cursor": nullable(INT)}),
        "ExplainRequest": _explain_request(),
        "ExplainResponse": _explain_response(),
        "Job": _job(),
        "JobPage": obj({"items": array(ref("Job")), "next_cursor": nullable(INT)}),
    }


# --- paths -------------------------------------------------------------------------------------

_ERRORS = {
    "400": "invalid input; `error.field` names it",
    "401": "no or unknown API token",
    "403": "the token's role is too weak",
    "404": "no such recovery (or job)",
    "409": "the recovery (or job) cannot take this transition; `error.allowed` lists what it can",
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(ok: Schema, ok_description: str, *errors: str) -> Schema:
    responses = {"200": _json(ok, ok_description)}
    responses.update({code: _json(ref("Error"), _ERRORS[code]) for code in errors})
    responses["default"] = _json(ref("Error"), "any other error, in the same shape")
    return responses


def _query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


def _body(name: str) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


ID_PARAMETER: Schema = {
    "name": "recovery_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT},
}


def _recoveries_list() -> Schema:
    filter_text = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NO_NUL}
    return {
        "operationId": "listRecoveries",
        "summary": "Recoveries, newest first, filtered and keyset-paginated",
        "parameters": [
            _query(
                "state",
                array(ref("RecoveryState")),
                "repeat it or separate states with commas",
                style="form",
                explode=True,
            ),
            _query("service", filter_text, "the catalog service"),
            _query("team", filter_text, "the team the recovery was opened for (metrics keep this team)"),
            _query("owner", filter_text, "the team that owns it now (PATCH owner changes it)"),
            _query("priority", {"type": "string", "enum": [*PRIORITIES, UNKNOWN]}, "P1..P5 or unknown"),
            _query("opened_after", TIME, "RFC 3339, inclusive"),
            _query("opened_before", TIME, "RFC 3339, exclusive"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
            _query("cursor", {"type": "string", "pattern": "^[0-9A-Za-z]{1,10}$"}, "`next_cursor` of a page"),
        ],
        "responses": _responses(ref("RecoveryPage"), "a page of recoveries", "400", "401", "403"),
    }


JOB_ID_PARAMETER: Schema = {**ID_PARAMETER, "name": "job_id"}


def _jobs_paths() -> dict[str, Schema]:
    admin = "needs an admin token"
    states = array({"type": "string", "enum": [s.value for s in JobState]})
    job_action = {"parameters": [JOB_ID_PARAMETER]}
    return {
        "/api/v1/jobs": {
            "get": {
                "operationId": "listJobs",
                "summary": "Outbox jobs, newest first",
                "parameters": [
                    _query("state", states, "repeat it or separate states with commas", style="form"),
                    _query(
                        "kind", {"type": "string", "minLength": 1, "maxLength": 64, "pattern": NO_NUL}, ""
                    ),
                    _query("recovery_id", {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT}, ""),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, ""),
                    _query(
                        "cursor", {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT}, "`next_cursor`"
                    ),
                ],
                "responses": _responses(ref("JobPage"), admin, "400", "401", "403"),
            }
        },
        "/api/v1/jobs/{job_id}": {
            **job_action,
            "get": {
                "operationId": "getJob",
                "summary": "One outbox job",
                "responses": _responses(ref("Job"), admin, "401", "403", "404"),
            },
        },
        "/api/v1/jobs/{job_id}/retry": {
            **job_action,
            "post": {
                "operationId": "retryJob",
                "summary": "Make a dead, discarded or waiting job due now, with a fresh set of attempts",
                "responses": _responses(ref("Job"), admin, "401", "403", "404", "409"),
            },
        },
        "/api/v1/jobs/{job_id}/discard": {
            **job_action,
            "post": {
                "operationId": "discardJob",
                "summary": "Give up on a pending, running or dead job",
                "responses": _responses(ref("Job"), admin, "401", "403", "404", "409"),
            },
        },
    }


def _paths() -> dict[str, Schema]:
    viewer, operator = "needs a viewer token", "needs an operator token"
    return {
        **_jobs_paths(),
        "/api/v1/alerts": {
            "get": {
                "operationId": "listAlerts",
                "summary": "Stored alert episodes, newest first",
                "parameters": [
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, ""),
                    _query(
                        "cursor", {"type": "integer", "minimum": 1, "maximum": MAX_BIGINT}, "`next_cursor`"
                    ),
                    _query("status", {"type": "string", "enum": ["firing", "resolved"]}, ""),
                    _query("fingerprint", {"type": "string", "pattern": NO_NUL}, ""),
                ],
                "responses": _responses(ref("AlertPage"), viewer, "400", "401", "403"),
            }
        },
        "/api/v1/explain": {
            "post": {
                "operationId": "explainAlerts",
                "summary": "Which rules and selectors an alert (or every alert of a payload) meets, and why",
                "requestBody": _body("ExplainRequest"),
                "responses": _responses(ref("ExplainResponse"), viewer, "400", "401", "403"),
            }
        },
        "/api/v1/recoveries": {"get": _recoveries_list()},
        "/api/v1/recoveries/{recovery_id}": {
            "parameters": [ID_PARAMETER],
            "get": {
                "operationId": "getRecovery",
                "summary": "One recovery with its alerts, enrichment, incident link and audit timeline",
                "responses": _responses(ref("RecoveryDetail"), viewer, "401", "403", "404"),
            },
            "patch": {
                "operationId": "updateRecovery",
                "summary": "Set the owner team, the workaround or the public message",
                "requestBody": _body("RecoveryPatch"),
                "responses": _responses(ref("RecoveryDetail"), operator, "400", "401", "403", "404", "409"),
            },
        },
        "/api/v1/recoveries/{recovery_id}/transitions": {
            "parameters": [ID_PARAMETER],
            "post": {
                "operationId": "transitionRecovery",
                "summary": "Move a recovery forward (or cancel it) by hand, with a reason",
                "requestBody": _body("TransitionRequest"),
                "responses": _responses(ref("RecoveryDetail"), operator, "400", "401", "403", "404", "409"),
            },
        },
        "/api/v1/recoveries/{recovery_id}/postmortem.md": {
            "parameters": [ID_PARAMETER],
            "get": {
                "operationId": "draftPostmortem",
                "summary": "A postmortem draft in Markdown: timeline, impact, owners, incident, actions, "
                "the latency breakdown, and open questions left blank",
                "responses": {
                    "200": {
                        "description": viewer,
                        "content": {"text/markdown": {"schema": {"type": "string"}}},
                    },
                    **{code: _json(ref("Error"), _ERRORS[code]) for code in ("401", "403", "404")},
                    "default": _json(ref("Error"), "any other error, in the same shape"),
                },
            },
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
            }
        },
    }


@cache
def openapi_document(teams: tuple[str, ...] = ()) -> dict[str, Any]:
    """The document for a catalog with these `teams` (the owners PATCH accepts; any name when empty).

    Built once per team list: the rest depends on code only.
    """
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "recoverlink API",
            "version": __version__,
            "description": "Recoveries, alerts and enrichment explanations. Errors always have the shape "
            '`{"error": {"code", "message", "field"?}}`; tokens are sent as `Authorization: Bearer`.',
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(teams),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
