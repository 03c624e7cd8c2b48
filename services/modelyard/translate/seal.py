"""Sealed reasoning: `include: ["reasoning.encrypted_content"]` where the engine has no encryption of its own.

The engine's reasoning is sealed by the adapter with AES-256-GCM under an operator key
(MODELYARD_SEAL_KEYS), so a client that keeps its own history (`store: false`, as Codex does) can send the
reasoning back next turn without being able to read or forge it. Several keys allow rotation: the first
seals, all of them open. A blob is `mys1.` + base64url(key id (4 bytes) + nonce (12) + ciphertext+tag); the
key id is the first bytes of SHA-256 over the key, so the right key is tried first, never named.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PREFIX = "mys1."
_AAD = b"modelyard sealed reasoning v1"


def _b64(text: str) -> bytes:
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SealError(ValueError):
    """A blob this adapter did not seal, or one altered since."""


def parse_keys(value: str) -> tuple[bytes, ...]:
    """MODELYARD_SEAL_KEYS: comma-separated 32-byte keys, base64 (standard or url-safe) or 64 hex digits."""
    keys = []
    for i, text in enumerate(t.strip() for t in value.split(",")):
        if not text:
            continue
        try:
            key = bytes.fromhex(text) if len(text) == 64 else _b64(text.replace("+", "-").replace("/", "_"))
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError(f"MODELYARD_SEAL_KEYS entry {i + 1} is not a 32-byte key (base64 or 64 hex digits)")
        keys.append(key)
    return tuple(keys)


class Sealer:
    """Seals with the first key; opens with any."""

    __slots__ = ("_keys", "ephemeral")

    def __init__(self, keys: tuple[bytes, ...], *, ephemeral: bool = False) -> None:
        if not keys:
            raise ValueError("a Sealer needs at least one key")
        self._keys = [(hashlib.sha256(k).digest()[:4], AESGCM(k)) for k in keys]
        self.ephemeral = ephemeral  # a per-process key: blobs do not survive a restart or reach a replica

    def __repr__(self) -> str:  # never the keys
        return f"Sealer({len(self._keys)} keys{', ephemeral' if self.ephemeral else ''})"

    @classmethod
    def random(cls) -> Sealer:
        return cls((secrets.token_bytes(32),), ephemeral=True)

    def seal(self, text: str) -> str:
        kid, aead = self._keys[0]
        nonce = os.urandom(12)
        blob = kid + nonce + aead.encrypt(nonce, text.encode(), _AAD)
        return _PREFIX + base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open(self, sealed: str) -> str:
        if not sealed.startswith(_PREFIX):
            raise SealError("not sealed by this gateway")
        try:
            blob = _b64(sealed[len(_PREFIX) :])
        except ValueError:
            raise SealError("not sealed by this gateway") from None
        if len(blob) < 4 + 12 + 16:
            raise SealError("not sealed by this gateway")
        kid, nonce, data = blob[:4], blob[4:16], blob[16:]
        # The matching key first, then the rest (a key id may collide).
        for _, aead in sorted(self._keys, key=lambda entry: entry[0] != kid):
            try:
                return aead.decrypt(nonce, data, _AAD).decode()
            except (InvalidTag, UnicodeDecodeError):
                continue
        raise SealError("altered, or sealed under a key this gateway does not hold")
