"""Ids: one random response id; everything inside a response derives from it.

Deriving item and call ids from the response id and the item's position costs nothing per item and makes
them stable, so a streamed and a non-streamed translation of the same reply agree exactly.
"""

from __future__ import annotations

import os


def new_response_id() -> str:
    return "resp_" + os.urandom(24).hex()


def item_id(prefix: str, response_id: str, index: int) -> str:
    """`msg_…`, `rs_…` or `fc_…` for the output item at `index`."""
    return f"{prefix}_{response_id[5:]}{index:04x}"


def call_id(response_id: str, index: int) -> str:
    """A `call_…` id for the `index`-th tool call of a reply whose upstream gave it none."""
    return f"call_{response_id[5:29]}{index:04x}"
