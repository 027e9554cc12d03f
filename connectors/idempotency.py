"""Each follow-up task's idempotency key as the CRMs carry it: one token every connector writes and looks up."""

from __future__ import annotations

import hashlib


def task_token(key: str) -> str:
    """The idempotency key as one alphanumeric token (``lpk`` and 24 hex digits): short enough for a task's subject,
    whole for a search that matches tokens (HubSpot's CONTAINS_TOKEN), the same for every CRM."""
    return "lpk" + hashlib.sha256(key.encode()).hexdigest()[:24]
