"""Stored state (docs/state.md): responses, their input items and stream events, conversations.

One interface (`Store`, base.py), two engines: SQLite, the embedded default (a file in a named volume,
WAL, no extra service), and PostgreSQL, for several adapters or hosts (MODELYARD_STORE_URL=postgresql://…).
Schema migrations are versioned (schema.py) and run at start. Writes are group-committed: each waits
for the transaction that holds it, so a reply reaches the client only once what it says is stored.
"""

from __future__ import annotations

from .base import Store, StoredResponse, open_store

__all__ = ["Store", "StoredResponse", "open_store"]
