"""The scripted outage, driven from outside as people and systems would drive it.

payments down (the exporter) -> PaymentsApiDown fires (Prometheus) -> Alertmanager delivers it ->
a recovery opens -> impact confirmed from Prometheus -> RT ticket linked -> an operator publishes a
workaround through the API -> an engineer takes the ticket in RT (the scrip moves the recovery to
fix_in_progress) -> the fix (payments up, failures back to 0) -> the alert resolves -> fix deployed
-> verification -> RT ticket resolved -> recovery closed.

The demo only ever acts where a person or a monitored system would (the exporter's metrics,
recoverlink's API with an operator token, RT's REST2 as root); everything else it reads by polling
Prometheus, Alertmanager and recoverlink's API, and prints as it appears (`Follower`).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from demo.narration import Narrator, describe_desktop, describe_entry, timestamp
from demo.processes import DemoError, wait_until
from demo.request_tracker import QUEUE, RequestTracker
from demo.servers import OUTAGE_FAILURES, AgentDesktop, DesktopRequest, PaymentsExporter
from demo.stack import Recoverlink

ALERT = "PaymentsApiDown"
SERVICE = "payments-api"
WORKAROUND = "Offer PayPal or bank transfer; card orders can be retried in a few minutes."
PUBLIC_MESSAGE = "Card payments are failing at checkout; PayPal and bank transfer work. We are on it."
POLL_SECONDS = 0.25


@dataclass
class Running:
    """Everything the scenario talks to."""

    narrator: Narrator
    recoverlink: Recoverlink
    rt: RequestTracker
    exporter: PaymentsExporter
    desktop: AgentDesktop
    prometheus_url: str
    alertmanager_url: str


@dataclass
class Follower:
    """Polls Prometheus, Alertmanager and the recovery, and prints each change once."""

    demo: Running
    prometheus_state: str | None = None  # the alert in Prometheus: None, pending, firing
    prometheus_fired: bool = False
    alertmanager_active: bool = False
    recovery: dict[str, Any] | None = None
    incident_status: str | None = None
    last_error: str | None = None
    _entries_seen: int = 0
    _desktop_seen: int = 0

    def poll(self) -> None:
        """Look once everywhere; a failed look is remembered for the timeout message, not hidden."""
        try:
            self._prometheus()
            self._alertmanager()
            self._recovery()
        except requests.RequestException as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"

    def wait_for(self, what: str, check: Callable[[Follower], bool], timeout: float = 60.0) -> None:
        """Poll until `check(self)`; DemoError naming `what` after `timeout` seconds."""

        def done() -> bool:
            self.poll()
            return check(self)

        wait_until(done, timeout=timeout, what=what, interval=POLL_SECONDS, details=self._details)

    def milestones(self) -> dict[str, str]:
        return dict((self.recovery or {}).get("milestones") or {})

    def desktop_shown(self) -> list[DesktopRequest]:
        """The agent desktop's requests already printed (what arrived after the last poll is not)."""
        return self.demo.desktop.received[: self._desktop_seen]

    def state(self) -> str | None:
        return None if self.recovery is None else str(self.recovery["state"])

    def _details(self) -> str:
        seen = f"state {self.state()}, milestones {', '.join(self.milestones()) or 'none'}"
        error = f"; last failed poll: {self.last_error}" if self.last_error else ""
        return f"(last seen: alert {self.prometheus_state}, recovery {seen}{error})"

    def _prometheus(self) -> None:
        query = f'ALERTS{{alertname="{ALERT}"}}'
        answer = requests.get(f"{self.demo.prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
        answer.raise_for_status()
        states = {s["metric"].get("alertstate") for s in answer.json()["data"]["result"]}
        state = "firing" if "firing" in states else ("pending" if "pending" in states else None)
        if state == self.prometheus_state:
            return
        words = {
            "pending": f"{ALERT} pending: payments_api_up == 0, waiting out `for: 2s`",
            "firing": f"{ALERT} firing: sent to Alertmanager",
            None: f"{ALERT} resolved: Prometheus sends the resolution to Alertmanager",
        }
        self.prometheus_fired = self.prometheus_fired or state == "firing"
        self.prometheus_state = state
        self.demo.narrator.step("prometheus", words[state])

    def _alertmanager(self) -> None:
        query = urllib.parse.urlencode({"filter": f'alertname="{ALERT}"'})
        answer = requests.get(f"{self.demo.alertmanager_url}/api/v2/alerts?{query}", timeout=5)
        answer.raise_for_status()
        active = any(a["status"]["state"] == "active" for a in answer.json())
        if active == self.alertmanager_active:
            return
        self.alertmanager_active = active
        message = (
            f"{ALERT} active: notifies recoverlink's webhook (group_wait 1s, bearer token)"
            if active
            else f"{ALERT} resolved: sends the resolved notification (send_resolved)"
        )
        self.demo.narrator.step("alertmanager", message)

    def _recovery(self) -> None:
        if self.recovery is None:
            items = self.demo.recoverlink.api(f"/api/v1/recoveries?service={SERVICE}")["items"]
            if not items:
                return
            recovery_id = items[-1]["id"]  # newest first: the last is the demo's first recovery
        else:
            recovery_id = self.recovery["id"]
        recovery = self.demo.recoverlink.api(f"/api/v1/recoveries/{recovery_id}")
        self.recovery = recovery
        timeline: list[dict[str, Any]] = recovery["timeline"]
        lines = [
            (timestamp(entry["at"]), "recoverlink", describe_entry(entry, recovery))
            for entry in timeline[self._entries_seen :]
        ]
        self._entries_seen = len(timeline)
        arrived = list(self.demo.desktop.received)
        lines += [(r.at, "agent desktop", describe_desktop(r)) for r in arrived[self._desktop_seen :]]
        self._desktop_seen = len(arrived)
        for at, who, said in sorted(lines, key=lambda line: line[0]):
            if said is not None:
                self.demo.narrator.step(who, said, at=at)
        incident = recovery.get("incident") or {}
        status = incident.get("status")
        if status != self.incident_status and status not in (None, "pending"):
            self.demo.narrator.step("recoverlink", f"its incident, RT ticket #{incident.get('id')}: {status}")
        self.incident_status = status


def run_outage(demo: Running) -> dict[str, Any]:
    """The whole script; the closed recovery as the API answers it."""
    narrator, follower = demo.narrator, Follower(demo)
    follower.poll()
    failures = ", ".join(f"{segment} {n:g}/min" for segment, n in OUTAGE_FAILURES.items())
    narrator.say()
    narrator.step("demo", "payments are healthy; now the outage: payments-api goes down")
    demo.exporter.break_payments()
    narrator.outage_began = time.time()
    narrator.step("payments", f"payments_api_up 0; checkout failures by segment: {failures}")
    follower.wait_for(f"{ALERT} to fire in Prometheus", lambda f: f.prometheus_state == "firing", 30)
    follower.wait_for("recoverlink to open a recovery", lambda f: f.recovery is not None, 30)
    follower.wait_for(
        "customer impact from Prometheus and the RT ticket",
        lambda f: {"impact_identified", "incident_linked"} <= f.milestones().keys(),
        60,
    )
    _publish_workaround(demo, follower)
    _engineer_takes_ticket(demo, follower)
    narrator.step("demo", "the payments team fails over: payments-api is back")
    demo.exporter.fix_payments()
    narrator.step("payments", "payments_api_up 1; checkout failures back to 0")
    follower.wait_for(
        f"{ALERT} to resolve in Prometheus",
        lambda f: f.prometheus_fired and f.prometheus_state is None,
        30,
    )
    follower.wait_for("the recovery to close", lambda f: f.state() == "closed", 120)
    follower.wait_for(
        "the agent desktop's banner to come down",
        lambda f: any(
            isinstance(r.body, dict) and r.body.get("state") == "closed" for r in f.desktop_shown()
        ),
        30,
    )
    recovery = follower.recovery
    assert recovery is not None  # the wait above saw it closed
    _show_ticket(demo, recovery)
    return recovery


def _publish_workaround(demo: Running, follower: Follower) -> None:
    """An operator (the demo's operator token) publishes the workaround and the public message."""
    recovery = follower.recovery
    assert recovery is not None
    body = {
        "target": "workaround_available",
        "reason": "payments on-call: card payments down, failing over",
        "workaround": WORKAROUND,
        "public_message": PUBLIC_MESSAGE,
    }
    url = f"{demo.recoverlink.url}/api/v1/recoveries/{recovery['id']}/transitions"
    demo.narrator.step(
        "demo:operator", f"POST {url.removeprefix(demo.recoverlink.url)} (workaround_available)"
    )
    headers = {"Authorization": f"Bearer {demo.recoverlink.operator_token}"}
    answer = requests.post(url, json=body, headers=headers, timeout=10)
    if answer.status_code != 200:
        raise DemoError(f"the operator's transition answered {answer.status_code}: {answer.text}")
    follower.wait_for("the workaround", lambda f: "workaround_published" in f.milestones(), 30)


def _engineer_takes_ticket(demo: Running, follower: Follower) -> None:
    """An engineer opens the RT ticket (REST2 as root); the shipped scrip tells recoverlink."""
    recovery = follower.recovery
    assert recovery is not None
    ticket = recovery["incident"]["id"]
    demo.narrator.step("demo:engineer", f"takes RT ticket #{ticket}: Status new -> open (as root, in RT)")
    answer = demo.rt.person().put(demo.rt.rest(f"/ticket/{ticket}"), json={"Status": "open"}, timeout=10)
    if answer.status_code != 200:
        raise DemoError(f"RT answered {answer.status_code} to the status change: {answer.text}")
    follower.wait_for("fix_in_progress from RT's scrip", lambda f: f.state() == "fix_in_progress", 30)


def _show_ticket(demo: Running, recovery: dict[str, Any]) -> None:
    """The queue as RT itself has it now: one ticket for the one recovery, its status and comments."""
    ticket = recovery["incident"]["id"]
    session = demo.rt.person()
    query = urllib.parse.urlencode({"query": f"Queue = '{QUEUE}'", "fields": "Status", "per_page": 100})
    found = session.get(demo.rt.rest(f"/tickets?{query}"), timeout=10)
    found.raise_for_status()
    tickets = ", ".join(f"#{item['id']} {item.get('Status')}" for item in found.json()["items"])
    history = session.get(demo.rt.rest(f"/ticket/{ticket}/history?fields=Type&per_page=100"), timeout=10)
    history.raise_for_status()
    comments = sum(1 for item in history.json()["items"] if item.get("Type") == "Comment")
    demo.narrator.step(
        "request tracker",
        f"queue {QUEUE} holds {found.json()['total']} ticket(s): {tickets}; "
        f"ticket #{ticket} has {comments} comments from recoverlink",
    )


def where_the_time_went(recovery: dict[str, Any]) -> list[str]:
    """The recovery's latencies from its milestones, as the board's waterfall starts them."""
    stamps = {name: timestamp(at) for name, at in recovery["milestones"].items()}
    alert_start = min(timestamp(a["starts_at"]) for a in recovery["alerts"])
    spans = [
        ("alert fired -> recovery opened", alert_start, stamps.get("opened")),
        ("opened -> customer impact identified", stamps.get("opened"), stamps.get("impact_identified")),
        ("opened -> RT ticket linked", stamps.get("opened"), stamps.get("incident_linked")),
        ("opened -> workaround published", stamps.get("opened"), stamps.get("workaround_published")),
        ("fix deployed -> impact verified", stamps.get("fix_deployed"), stamps.get("impact_verified")),
        ("fix deployed -> CX updated", stamps.get("fix_deployed"), stamps.get("cx_updated")),
        ("fix deployed -> closed", stamps.get("fix_deployed"), stamps.get("closed")),
        ("opened -> closed", stamps.get("opened"), stamps.get("closed")),
    ]
    return [f"{name:<40} {end - start:6.1f} s" for name, start, end in spans if start and end]
