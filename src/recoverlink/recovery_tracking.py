"""Inside the ingest transaction: place new episodes in recoveries and move recoveries whose alerts resolved.

The domain decides (correlation, state machine); this module only reads candidates and writes what
was decided, with an audit entry for every placement and transition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from recoverlink.action_plan import jobs_at_opening
from recoverlink.domain.actions import planned_record
from recoverlink.domain.alerts import Alert, AlertStatus, EpisodeChange, EpisodeDecision
from recoverlink.domain.correlation import CorrelationDecision, CorrelationOutcome, EpisodeToPlace
from recoverlink.domain.correlation import open_or_attach_recovery as correlate
from recoverlink.domain.enrichment import Enrichment, OwnerSource
from recoverlink.domain.recovery_state import (
    RecoveryEvent,
    RecoveryEventKind,
    RecoveryState,
    RecoveryStatus,
    Transition,
    TransitionSource,
    apply_event,
    new_recovery_status,
    refusal,
)
from recoverlink.domain.rules import ResolutionPolicy, StormScope
from recoverlink.itsm_jobs import draft_record
from recoverlink.itsm_plan import incident_draft, open_job
from recoverlink.recovery_jobs import (
    JobPlan,
    PendingWrites,
    commit_transition,
    finish_facts,
    impact_context,
    jobs_for_opening,
)
from recoverlink.store import recoveries as store
from recoverlink.telemetry import FinishFacts

ACTOR = "alertmanager"
SOURCE = TransitionSource.ALERTMANAGER
ROLE = {
    CorrelationOutcome.ATTACHED: "member",
    CorrelationOutcome.REOPENED: "member",
    CorrelationOutcome.OPENED: "member",
    CorrelationOutcome.SYMPTOM: "symptom",
    CorrelationOutcome.STORM: "storm",
}


# Outcomes after which the recovery collects alerts under the episode's own correlation key.
_COLLECTS_UNDER_ITS_KEY = (
    CorrelationOutcome.ATTACHED,
    CorrelationOutcome.OPENED,
    CorrelationOutcome.REOPENED,
)


@dataclass(frozen=True)
class OpenedRecovery:
    """Labels of `recoverlink_recoveries_opened_total` / `_reopened_total`."""

    team: str | None
    priority: str
    service: str | None


@dataclass(frozen=True)
class CommittedTransition:
    """A transition this delivery made, with the labels its metrics carry."""

    transition: Transition
    team: str | None
    priority: str
    service: str | None
    finish: FinishFacts | None = None


@dataclass
class TrackingOutcome:
    opened: list[OpenedRecovery] = field(default_factory=list)
    reopened: list[OpenedRecovery] = field(default_factory=list)
    placements: Counter[CorrelationOutcome] = field(default_factory=Counter)
    transitions: list[CommittedTransition] = field(default_factory=list)
    storm_joins: list[str | None] = field(default_factory=list)  # the team of each episode a storm absorbed


def track_recoveries(
    conn: Connection,
    decisions: Sequence[EpisodeDecision],
    ids: Mapping[tuple[str, datetime], int],
    *,
    enrichment_of: Callable[[Alert], Enrichment],
    group_key: str,
    now: datetime,
    plan: JobPlan,
) -> TrackingOutcome:
    """Place every new episode, then apply `alerts_resolved` to recoveries left with none firing."""
    tracker = _Tracker(conn, now, group_key, plan)
    changed = [d for d in decisions if d.change in (EpisodeChange.INSERT, EpisodeChange.RESOLVE)]
    inserted = [(d.alert, enrichment_of(d.alert)) for d in changed if d.change is EpisodeChange.INSERT]
    # Storm scopes are locked as placing reaches them (candidates_for): in one order in every
    # delivery, so that two deliveries never wait for each other's scope.
    inserted.sort(key=lambda pair: store.storm_lock_key(_storm_scope(pair[1])))
    for alert, enrichment in inserted:
        tracker.place(alert, ids[alert.episode_key], enrichment)
    resolved = {ids[d.alert.episode_key] for d in changed if d.alert.status is AlertStatus.RESOLVED}
    if resolved:
        tracker.pending.flush_attachments(conn, now)  # the counts below read them
    touched = {store.recovery_of_alert(conn, alert_id) for alert_id in resolved}
    for recovery_id in sorted(r for r in touched if r is not None):
        tracker.fix_deployed_if_all_resolved(recovery_id)
    tracker.pending.flush(conn, now, plan.max_attempts)
    return tracker.outcome


@dataclass
class _Tracker:
    """One delivery's recovery work, in its transaction."""

    conn: Connection
    now: datetime
    group_key: str
    plan: JobPlan
    outcome: TrackingOutcome = field(default_factory=TrackingOutcome)
    pending: PendingWrites = field(default_factory=PendingWrites)
    # correlation key -> the collecting recovery an earlier episode of this delivery joined or opened:
    # the next episodes of the group join it without asking the store again.
    collecting: dict[str, int] = field(default_factory=dict)
    storm_locks: set[str] = field(default_factory=set)  # the storm scopes this transaction holds

    def place(self, alert: Alert, alert_id: int, enrichment: Enrichment) -> None:
        episode = _episode(alert, enrichment, self.group_key)
        joined = self.collecting.get(episode.correlation_key)
        if joined is not None:
            self.pending.attachments.append(
                store.Attachment(joined, alert_id, ROLE[CorrelationOutcome.ATTACHED])
            )
            self.outcome.placements[CorrelationOutcome.ATTACHED] += 1
            return
        storm = episode.storm
        scope = _storm_scope(enrichment)
        since = self.now - storm.window if storm is not None else None
        candidates = store.candidates_for(
            self.conn,
            episode.correlation_key,
            episode.depends_on,
            storm_scope=scope,
            storm_since=since,
            storm_locks=self.storm_locks,
        )
        decision = correlate(episode, candidates)
        recovery_id = self._apply(decision, alert, enrichment, episode)
        self.pending.attachments.append(store.Attachment(recovery_id, alert_id, ROLE[decision.outcome]))
        if decision.outcome in _COLLECTS_UNDER_ITS_KEY:
            self.collecting[episode.correlation_key] = recovery_id
        self.outcome.placements[decision.outcome] += 1
        if decision.outcome is CorrelationOutcome.STORM:
            self.outcome.storm_joins.append(episode.team)
        if decision.outcome is not CorrelationOutcome.ATTACHED:
            # Joining the recovery of its own key is recorded by the attachment row; a reopen,
            # a symptom, a storm or an opening is a decision people will want to read back.
            placed = {"outcome": decision.outcome.value, "reason": decision.reason}
            self._audit(recovery_id, "correlation", {**placed, "fingerprint": alert.fingerprint})

    def _apply(
        self, decision: CorrelationDecision, alert: Alert, enrichment: Enrichment, episode: EpisodeToPlace
    ) -> int:
        labels = OpenedRecovery(enrichment.owner, enrichment.priority, enrichment.service)
        if decision.outcome is CorrelationOutcome.REOPENED and decision.recovery_id is not None:
            event = RecoveryEvent(RecoveryEventKind.ALERT_REFIRED, SOURCE, {"fingerprint": alert.fingerprint})
            if self.transition(decision.recovery_id, event):
                self.outcome.reopened.append(labels)
            return decision.recovery_id
        if decision.recovery_id is not None:
            return decision.recovery_id
        recovery_id = self._open(decision, alert, enrichment, episode)
        if recovery_id is None:
            # Another delivery opened a recovery with this key between our read and our insert.
            existing = store.open_recovery_id(self.conn, episode.correlation_key)
            assert existing is not None, "an open recovery holds the key we could not insert"
            return existing
        self.outcome.opened.append(labels)
        return recovery_id

    def _open(
        self, decision: CorrelationDecision, alert: Alert, enrichment: Enrichment, episode: EpisodeToPlace
    ) -> int | None:
        closes = enrichment.resolution is ResolutionPolicy.CLOSE
        system = self.plan.itsm_for(enrichment.itsm.system)
        status = new_recovery_status(
            self.now, itsm_configured=system is not None, resolution_closes_incident=closes
        )
        owner = self._owner_at_opening(status, enrichment)
        if owner is not None:
            status = owner.status
        title = _title(alert, enrichment)
        context = impact_context(title, self.now, alert, enrichment)
        new = store.NewRecovery(
            correlation_key=episode.correlation_key,
            title=title,
            service=enrichment.service,
            service_ref=enrichment.service_ref,
            team=enrichment.owner,
            priority=enrichment.priority,
            resolution_policy=enrichment.resolution.value,
            reopen_window=enrichment.reopen_window,
            linked_to=decision.linked_to,
            storm=decision.becomes_storm_parent,
            impact_sources=enrichment.impact_sources,
            impact_context=context,
            itsm_system=system,
            actions=[planned_record(action) for action in enrichment.actions],
        )
        recovery_id = store.open_recovery(self.conn, new, status, self.now)
        if recovery_id is None:
            return None
        self.pending.jobs.extend(jobs_for_opening(recovery_id, enrichment.impact_sources, context, self.now))
        stamped = owner.stamped if owner is not None else ()
        self.pending.jobs.extend(jobs_at_opening(recovery_id, new.actions, stamped, self.now))
        if system is not None:
            draft = incident_draft(recovery_id, title, alert, enrichment)
            self.pending.jobs.append(open_job(recovery_id, system, draft_record(draft), self.now))
        details = {"correlation_key": episode.correlation_key, "linked_to": decision.linked_to}
        self._audit(recovery_id, "opened", {**details, "reason": decision.reason}, RecoveryState.OPENED)
        if owner is not None:
            self.pending.audits.append(store.transition_audit(recovery_id, owner, ACTOR))
            self.outcome.transitions.append(CommittedTransition(owner, new.team, new.priority, new.service))
        return recovery_id

    def _owner_at_opening(self, status: RecoveryStatus, enrichment: Enrichment) -> Transition | None:
        """An owner from the catalog or a rule is known the moment the recovery opens: the transition
        is applied before the insert, so the row is written once."""
        if not enrichment.owner or enrichment.owner_source not in (OwnerSource.CATALOG, OwnerSource.RULE):
            return None
        evidence = {"owner_source": enrichment.owner_source.value}
        event = RecoveryEvent(RecoveryEventKind.OWNER_KNOWN, SOURCE, evidence, owner=enrichment.owner)
        return apply_event(status, event, self.now)

    def fix_deployed_if_all_resolved(self, recovery_id: int) -> None:
        # Lock first, count second: two deliveries resolving the last two alerts at once must not
        # both see the other's alert still firing (PostgreSQL, READ COMMITTED).
        row = store.load_row(self.conn, recovery_id, for_update=True)
        if row is None or store.firing_alerts(self.conn, recovery_id) > 0:
            return
        event = RecoveryEvent(RecoveryEventKind.ALERTS_RESOLVED, SOURCE, {"reason": "every alert resolved"})
        self.transition(recovery_id, event, row=row)

    def transition(self, recovery_id: int, event: RecoveryEvent, row: Any = None) -> bool:
        """Apply an event if the state machine accepts it; True when it changed something."""
        row = row if row is not None else store.load_row(self.conn, recovery_id, for_update=True)
        status: RecoveryStatus = store.status_of(row)
        if refusal(status, event) is not None:
            return False
        transition = apply_event(status, event, self.now)
        if transition.changed:
            commit_transition(self.conn, row, transition, ACTOR, self.plan, pending=self.pending)
            finish = finish_facts(row, transition)
            committed = CommittedTransition(transition, row.team, row.priority, row.service, finish)
            self.outcome.transitions.append(committed)
        return transition.changed

    def _audit(
        self,
        recovery_id: int,
        kind: str,
        details: Mapping[str, object],
        to_state: RecoveryState | None = None,
    ) -> None:
        row = store.audit_row(
            recovery_id,
            at=self.now,
            source=SOURCE.value,
            actor=ACTOR,
            kind=kind,
            details=details,
            to_state=to_state.value if to_state else None,
        )
        self.pending.audits.append(row)


def _episode(alert: Alert, enrichment: Enrichment, group_key: str) -> EpisodeToPlace:
    return EpisodeToPlace(
        correlation_key=enrichment.correlation_key or f"group/{group_key}",
        service_ref=enrichment.service_ref,
        depends_on=enrichment.depends_on,
        team=enrichment.owner,
        fired_at=alert.starts_at,
        reopen_window=enrichment.reopen_window,
        storm=enrichment.storm,
    )


def _storm_scope(enrichment: Enrichment) -> tuple[StormScope, str] | None:
    """The team or service whose recent openings storm mode counts for this episode, if any."""
    storm = enrichment.storm
    if storm is None:
        return None
    value = enrichment.owner if storm.scope is StormScope.TEAM else enrichment.service
    return (storm.scope, value) if value is not None else None


def _title(alert: Alert, enrichment: Enrichment) -> str:
    summary = enrichment.fields.get("summary") or alert.annotations.get("summary")
    return summary or alert.labels.get("alertname", "alert")
