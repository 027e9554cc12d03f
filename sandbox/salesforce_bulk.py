"""Salesforce's Bulk API 2.0 and ``/limits``, as routes the Salesforce imitation inherits (see ``salesforce.py``)."""
from __future__ import annotations


class BulkApi:
    """The Bulk API 2.0 query and ingest jobs and the ``/limits`` resource; mixed into :class:`Salesforce`."""
