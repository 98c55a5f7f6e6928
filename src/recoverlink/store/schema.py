"""The tables. Times are stored as naive UTC in both SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")

notifications = Table(
    "notifications",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # Equal for every copy of one notification (HA members differ only in externalURL).
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("received_at", DateTime(), nullable=False),
    Column("last_received_at", DateTime(), nullable=False),
    Column("delivery_count", Integer(), nullable=False, server_default="1"),
    Column("receiver", Text(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("group_key", Text(), nullable=False),
    Column("external_url", Text(), nullable=False),
    Column("truncated_alerts", Integer(), nullable=False),
    Column("alert_count", Integer(), nullable=False),
    Column("raw_body", LargeBinary(), nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fingerprint", String(64), nullable=False),
    Column("starts_at", DateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("ends_at", DateTime(), nullable=True),
    Column("labels", Json, nullable=False),
    Column("annotations", Json, nullable=False),
    Column("generator_url", Text(), nullable=False),
    Column("flags", Json, nullable=False),
    Column("first_seen_at", DateTime(), nullable=False),
    Column("last_seen_at", DateTime(), nullable=False),
    Column("resolved_at", DateTime(), nullable=True),
    Column("first_notification_id", Id, ForeignKey("notifications.id"), nullable=False),
    # What enrichment decided when the episode was first seen, and the rule-set version it used.
    Column("enrichment", Json, nullable=True),
    Column("ruleset_version", String(32), nullable=True),
    # When the worker found the episode not re-sent for its stale_after (NULL: not stale).
    Column("stale_at", DateTime(), nullable=True),
    # An episode is (fingerprint, startsAt): one row, whatever the number of deliveries.
    UniqueConstraint("fingerprint", "starts_at"),
    Index(None, "status", "last_seen_at"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    # sha256 of the token: the token itself is shown once and never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(), nullable=False),
    Column("revoked_at", DateTime(), nullable=True),
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # The content hash of a validated catalog + rules; every process polls for the newest one.
    Column("version", String(32), nullable=False),
    Column("announced_at", DateTime(), nullable=False),
    Column("announced_by", String(200), nullable=False),
)

recoveries = Table(
    "recoveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("correlation_key", String(255), nullable=False),
    # The correlation key until the fix is deployed, NULL after: unique, so two processes that
    # correlate alerts of the same new failure at once open one recovery (NULLs never collide).
    Column("open_key", String(255), nullable=True, unique=True),
    Column("state", String(32), nullable=False),
    Column("title", Text(), nullable=False),
    Column("service", String(255), nullable=True),
    Column("service_ref", String(255), nullable=True),
    Column("team", String(255), nullable=True),
    Column("priority", String(16), nullable=False),
    Column("opened_at", DateTime(), nullable=False),
    Column("state_changed_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    Column("milestones", Json, nullable=False),
    Column("owner", String(255), nullable=True),
    Column("escalation_bounces", Integer(), nullable=False, server_default="0"),
    Column("reopen_count", Integer(), nullable=False, server_default="0"),
    Column("incident_resolved", Boolean(), nullable=False, server_default="0"),
    Column("incident_closed", Boolean(), nullable=False, server_default="0"),
    Column("itsm_configured", Boolean(), nullable=False),
    Column("resolution_policy", String(16), nullable=False),
    Column("reopen_window_seconds", Float(), nullable=False),
    Column("linked_to", Id, ForeignKey("recoveries.id"), nullable=True),
    Column("storm", Boolean(), nullable=False, server_default="0"),
    Column("storm_episodes", Integer(), nullable=False, server_default="0"),
    Column("symptoms", Integer(), nullable=False, server_default="0"),
    Column("workaround", Text(), nullable=True),
    Column("public_message", Text(), nullable=True),
    # Impact: the sources named by the first episode's enrichment, the template context their
    # queries render with, and what each source last said (status, counts, facts, verification).
    Column("impact_sources", Json, nullable=False, server_default="[]"),
    Column("impact_context", Json, nullable=False, server_default="{}"),
    Column("impact", Json, nullable=False, server_default="{}"),
    # The linked ITSM incident: the system chosen at opening, then what it answered once created.
    Column("itsm_system", String(16), nullable=True),
    Column("incident_id", String(255), nullable=True),
    Column("incident_number", String(255), nullable=True),
    Column("incident_url", Text(), nullable=True),
    Column("incident_status", String(16), nullable=True),
    # The highest change counter seen (ServiceNow sys_mod_count): an older callback changes nothing.
    Column("incident_sequence", BigInteger(), nullable=True),
    # A person set the owner or the impact by hand (recoverlink_recoveries_finished_total).
    Column("manual_lookup", Boolean(), nullable=False, server_default="0"),
    # The CX handoff actions of the rules that matched its first alert: {"name": "rule/action",
    # "kind", "on": [triggers]} each (domain.actions.planned_record).
    Column("actions", Json, nullable=False, server_default="[]"),
    Index(None, "state", "id"),
    Index(None, "team", "id"),
    Index(None, "owner", "id"),
    Index(None, "service", "id"),
    Index(None, "correlation_key", "id"),
    Index(None, "opened_at"),
    # Storm mode counts a team's or service's recent openings and finds its open storm parent.
    Index(None, "team", "opened_at"),
    Index(None, "service", "opened_at"),
)

# Written the same in the index and in the lookup, so SQLite's planner can use the partial index.
STORM_PARENT_WHERE = text("storm AND open_key IS NOT NULL")
Index("ix_recoveries_incident", recoveries.c.itsm_system, recoveries.c.incident_id)
Index(
    "ix_recoveries_storm_parent_team",
    recoveries.c.team,
    recoveries.c.id,
    sqlite_where=STORM_PARENT_WHERE,
    postgresql_where=STORM_PARENT_WHERE,
)
Index(
    "ix_recoveries_storm_parent_service",
    recoveries.c.service,
    recoveries.c.id,
    sqlite_where=STORM_PARENT_WHERE,
    postgresql_where=STORM_PARENT_WHERE,
)

recovery_alerts = Table(
    "recovery_alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("recovery_id", Id, ForeignKey("recoveries.id"), nullable=False),
    # An episode belongs to exactly one recovery.
    Column("alert_id", Id, ForeignKey("alerts.id"), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # member | symptom | storm
    Column("attached_at", DateTime(), nullable=False),
    Index(None, "recovery_id"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("recovery_id", Id, ForeignKey("recoveries.id"), nullable=True),
    Column("at", DateTime(), nullable=False),
    Column("source", String(16), nullable=False),  # alertmanager | itsm | operator | worker
    Column("actor", String(255), nullable=False),
    Column("kind", String(32), nullable=False),  # transition | correlation | enrichment | owner | ...
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=True),
    Column("details", Json, nullable=False),
    Index(None, "recovery_id", "id"),
)

outbox_jobs = Table(
    "outbox_jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),  # e.g. impact.lookup
    # The same work asked twice (a retried delivery, two replicas) is one job.
    Column("idempotency_key", String(255), nullable=False, unique=True),
    Column("recovery_id", Id, ForeignKey("recoveries.id"), nullable=True),
    Column("payload", Json, nullable=False),
    Column("state", String(16), nullable=False),  # pending | running | done | dead | discarded
    # Lower runs first among due jobs: creating an incident goes before updating others.
    Column("priority", Integer(), nullable=False, server_default="5"),
    # When it may run next: for a running job, when its lease expires and it may be claimed again.
    Column("due_at", DateTime(), nullable=False),
    Column("attempts", Integer(), nullable=False, server_default="0"),
    Column("max_attempts", Integer(), nullable=False),
    # A new token per claim: a worker whose lease expired can no longer record an outcome.
    Column("claim_token", String(32), nullable=True),
    Column("claimed_by", String(255), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("last_reason", String(64), nullable=True),
    Column("result", Json, nullable=True),
    Column("created_at", DateTime(), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    Column("first_started_at", DateTime(), nullable=True),
    Column("finished_at", DateTime(), nullable=True),
    Index(None, "state", "due_at"),
    Index(None, "recovery_id"),
    Index(None, "kind", "state"),
)

# Claiming scans due jobs in this order and stops at the limit, however large the backlog; the same
# text is in the claim queries, so SQLite's planner can use the partial index.
CLAIMABLE_WHERE = text("state IN ('pending', 'running')")
Index(
    "ix_outbox_jobs_claimable",
    outbox_jobs.c.priority,
    outbox_jobs.c.due_at,
    outbox_jobs.c.id,
    sqlite_where=CLAIMABLE_WHERE,
    postgresql_where=CLAIMABLE_WHERE,
)

# Callbacks and poll results already applied, so a redelivered or re-polled change applies once.
itsm_changes = Table(
    "itsm_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("system", String(16), nullable=False),
    Column("dedup_key", String(255), nullable=False),
    Column("recovery_id", Id, ForeignKey("recoveries.id"), nullable=True),
    Column("received_at", DateTime(), nullable=False),
    Column("outcome", String(32), nullable=False),
    UniqueConstraint("system", "dedup_key"),
)
