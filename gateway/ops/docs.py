"""The generated tables of the docs: data sharing (docs/policy.md), reason codes (a test checks).

Reviewers read who receives which fields of which type, for what purpose, in one place; the
tables are rendered from the same validated policy the workers load, so they cannot drift.
"""

from __future__ import annotations

from gateway.core.policy import Policy
from gateway.reasons import ReasonCode


def _fields(fields: frozenset[str]) -> str:
    return ", ".join(f"`{f}`" for f in sorted(fields))


def markdown_tables(policy: Policy) -> str:
    """One table of event routes, one of request rules."""
    events = [
        "| event type | publisher | recipient | purpose | fields delivered |",
        "|---|---|---|---|---|",
    ]
    for route in sorted(policy.routes, key=lambda r: r.type):
        if not route.recipients:
            events.append(f"| `{route.type}` | {route.publisher} | (none: refused) | | |")
        events.extend(
            f"| `{route.type}` | {route.publisher} | {grant.agency} | `{grant.purpose}` "
            f"| {_fields(grant.fields)} |"
            for grant in route.recipients
        )
    requests = [
        "| request type | requester | answerer | purpose | request fields to the answerer "
        "| response fields back | max timeout |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule in sorted(policy.requests, key=lambda r: r.type):
        requests.extend(
            f"| `{rule.type}` | {grant.agency} | {rule.answerer} | `{grant.purpose}` "
            f"| {_fields(grant.fields)} | {_fields(grant.response_fields)} "
            f"| {rule.max_timeout_seconds:g} s |"
            for grant in rule.requesters
        )
    return "\n".join([*events, "", *requests]) + "\n"


def reason_table() -> str:
    """The reason-code table of ``docs/reason-codes.md``."""
    rows = [f"| `{code.value}` | {code.description} |" for code in ReasonCode]
    return "\n".join(["| reason code | meaning |", "|---|---|", *rows]) + "\n"
