"""The store's schema, as numbered migrations applied in order at start (the `schema_version` table
says which ran). A new migration is a new entry at the end; an applied one never changes."""

from __future__ import annotations

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE responses (
                id TEXT PRIMARY KEY,
                scope TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT,
                status TEXT NOT NULL,
                previous_id TEXT,
                conversation_id TEXT,
                request TEXT NOT NULL,
                input_items TEXT NOT NULL,
                response TEXT NOT NULL
            )""",
            "CREATE INDEX responses_expiry ON responses (expires_at)",
            "CREATE INDEX responses_status ON responses (status)",
            """CREATE TABLE response_events (
                response_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                event TEXT NOT NULL,
                PRIMARY KEY (response_id, seq)
            )""",
            """CREATE TABLE conversations (
                id TEXT PRIMARY KEY,
                scope TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT,
                metadata TEXT NOT NULL
            )""",
            """CREATE TABLE conversation_items (
                conversation_id TEXT NOT NULL,
                pos BIGINT NOT NULL,
                id TEXT NOT NULL,
                item TEXT NOT NULL,
                PRIMARY KEY (conversation_id, pos)
            )""",
            "CREATE INDEX conversation_items_id ON conversation_items (conversation_id, id)",
        ],
    ),
    (
        2,
        [
            """CREATE TABLE replicas (
                backend TEXT NOT NULL,
                url TEXT NOT NULL,
                weight DOUBLE PRECISION NOT NULL,
                labels TEXT NOT NULL,
                registered_at BIGINT NOT NULL,
                PRIMARY KEY (backend, url)
            )""",
        ],
    ),
    (
        3,
        [
            """CREATE TABLE usage (
                scope TEXT NOT NULL,
                model TEXT NOT NULL,
                bucket BIGINT NOT NULL,
                requests BIGINT NOT NULL,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cached_tokens BIGINT NOT NULL,
                reasoning_tokens BIGINT NOT NULL,
                PRIMARY KEY (scope, model, bucket)
            )""",
            """CREATE TABLE usage_errors (
                scope TEXT NOT NULL,
                model TEXT NOT NULL,
                bucket BIGINT NOT NULL,
                type TEXT NOT NULL,
                count BIGINT NOT NULL,
                PRIMARY KEY (scope, model, bucket, type)
            )""",
            """CREATE TABLE captures (
                id TEXT PRIMARY KEY,
                rollout_id TEXT NOT NULL,
                scope TEXT NOT NULL,
                seq BIGINT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at BIGINT,
                call TEXT NOT NULL
            )""",
            "CREATE INDEX captures_rollout ON captures (rollout_id, seq)",
            "CREATE INDEX captures_time ON captures (created_at)",
        ],
    ),
]
