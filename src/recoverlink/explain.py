"""Why an alert was (or was not) enriched: the same answer for `recoverlink explain` and the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from recoverlink.domain.enrichment import AlertFacts, Enricher, enrichment_record


def explain_alerts(enricher: Enricher, alerts: Sequence[AlertFacts]) -> list[dict[str, Any]]:
    """For each alert: every rule and selector considered, and the final enrichment."""
    results = []
    for alert in alerts:
        steps, enrichment = enricher.explain(alert)
        results.append(
            {
                "labels": dict(alert.labels),
                "steps": [vars(step) for step in steps],
                "enrichment": enrichment_record(enrichment),
            }
        )
    return results


def render_text(results: Sequence[dict[str, Any]]) -> str:
    """A terminal view: one block per alert, a line per step, then what was decided."""
    lines: list[str] = []
    for number, result in enumerate(results, start=1):
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(result["labels"].items()))
        lines.append(f"alert {number}: {{{labels}}}")
        for step in result["steps"]:
            mark = "MATCH" if step["matched"] else "no   "
            where = f"  ({step['source']})" if step.get("source") else ""
            lines.append(f"  {mark} {step['kind']} {step['name']}: {step['reason']}{where}")
        lines.append("  enrichment:")
        lines.extend(_decided(result["enrichment"]))
        lines.append("")
    return "\n".join(lines)


def _decided(record: dict[str, Any]) -> list[str]:
    keys = (
        "service", "owner", "owner_source", "tier", "journeys", "segments", "priority", "impact",
        "urgency", "correlation_key", "resolution", "matched_rules", "fields", "labels", "misses",
        "actions", "template_errors", "ruleset_version",
    )  # fmt: skip
    return [f"    {key}: {record[key]}" for key in keys if record.get(key) not in (None, [], {}, "")]
