"""CX handoff actions: HTTP requests that rules send to systems of action when a recovery moves.

An action belongs to a rule (`rules/*.yaml`) and fires on *triggers*: a state the recovery entered
or a milestone it stamped (`on: [workaround_available, fix_deployed]`). A recovery takes the actions
of the rules its first alert matched, and fires each of them at most once per trigger and cycle
(a reopen starts a new cycle). Pure: what is sent, and how, is decided elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from recoverlink.domain.catalog import SourceLocation
from recoverlink.domain.recovery_state import Milestone, RecoveryState, Transition
from recoverlink.domain.rules import Template


class ActionKind(StrEnum):
    """Which system of action a request goes to; the `action` label of `recoverlink_actions_total`."""

    AGENT_DESKTOP = "agent_desktop"
    KNOWLEDGE_BASE = "knowledge_base"
    CHATBOT = "chatbot"
    CUSTOMER_MESSAGING = "customer_messaging"
    CRM_CASE = "crm_case"
    BILLING = "billing"
    CHAT = "chat"


# DESIGN.md, "CX updated": what customers and agents see changed. A CRM case link, a billing
# workflow or a chat message to the responders does not count.
CX_UPDATE_KINDS = frozenset(
    {
        ActionKind.AGENT_DESKTOP,
        ActionKind.KNOWLEDGE_BASE,
        ActionKind.CHATBOT,
        ActionKind.CUSTOMER_MESSAGING,
    }
)

# A trigger is the name of a state or of a milestone; four names are both (opened, fix_deployed,
# closed, postmortem_complete) and fire once whichever of the two happened.
TRIGGERS: tuple[str, ...] = tuple(
    dict.fromkeys([*(s.value for s in RecoveryState), *(m.value for m in Milestone)])
)


def counts_as_cx_update(kind: ActionKind) -> bool:
    """Whether a successful action of this kind after the fix is the recovery's CX update."""
    return kind in CX_UPDATE_KINDS


@dataclass(frozen=True)
class Action:
    """One action of a rule, after loading: templates compiled, references checked by `config/`.

    `url` is None when the action's credential holds the whole URL (a chat incoming webhook,
    whose URL is its secret)."""

    rule: str
    name: str
    kind: ActionKind
    on: tuple[str, ...]
    method: str = "POST"
    url: Template | None = None
    credential: str | None = None
    headers: Mapping[str, Template] = field(default_factory=dict)
    body: Template | None = None
    content_type: str = "application/json"
    source: SourceLocation | None = None

    @property
    def ref(self) -> str:
        """`rule/action`: how a recovery, a job and the audit trail name the action."""
        return f"{self.rule}/{self.name}"

    @property
    def sends_json(self) -> bool:
        return is_json_type(self.content_type)


def is_json_type(content_type: str) -> bool:
    """`application/json`, or a `+json` type such as `application/vnd.api+json`."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def planned_record(action: Action) -> dict[str, Any]:
    """What a recovery keeps of one of its actions when it opens: enough to decide, at every later
    transition and without the rules at hand, which actions fire."""
    return {"name": action.ref, "kind": action.kind.value, "on": list(action.on)}


def triggers_of(transition: Transition) -> tuple[str, ...]:
    """The triggers a committed transition fired: the state it entered, then what it stamped."""
    entered = [transition.to_state.value] if transition.moved else []
    return tuple(dict.fromkeys([*entered, *(m.value for m in transition.stamped)]))


def firing(planned: Sequence[Mapping[str, Any]], triggers: Sequence[str]) -> list[tuple[str, str, str]]:
    """(action ref, kind, trigger) for every planned action whose `on` names one of `triggers`."""
    return [
        (str(item["name"]), str(item["kind"]), trigger)
        for item in planned
        for trigger in triggers
        if trigger in item.get("on", ())
    ]
