"""Asking the police to verify someone, as the education and land mock agencies do."""

from __future__ import annotations

import logging
from typing import Literal

from connectors.client import AgencyClient
from connectors.errors import RequestRefused, RequestTimedOut
from schemas.base import RequestModel

REQUEST_TIMEOUT = 10.0  # seconds an officer waits for the police's answer


Stopped = Literal["no_answer", "refused", "not_verified"]


async def verified(
    client: AgencyClient, question: RequestModel, what: str, log: logging.Logger
) -> Stopped | None:
    """``None`` when the police answer that every field matches, else why the story stops."""
    try:
        answer = await client.request(question, timeout=REQUEST_TIMEOUT)
    except RequestTimedOut:
        return "no_answer"
    except RequestRefused as exc:
        log.warning("%s verification refused reason=%s", what, exc.reason.value)
        return "refused"
    if getattr(answer.data, "match", False) is not True:
        return "not_verified"
    return None
