"""Password hashing with argon2id (argon2-cffi).

Parameters follow the OWASP Password Storage Cheat Sheet's first argon2id
option: m = 19 MiB (19,456 KiB), t = 2, p = 1.
"""
from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1,
                        hash_len=32, salt_len=16, type=Type.ID)
# Verified against when no account matches, so a wrong address costs as long as
# a wrong password (no account enumeration by timing).
_DUMMY_HASH = HASHER.hash("onboard-timing-equaliser")


def hash_password(password: str) -> str:
    """Hash ``password``; returns a PHC string (``$argon2id$v=19$m=19456,t=2,p=1$…``)."""
    return HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check ``password`` against ``password_hash``; a ``None`` hash still spends
    the time of one verification and returns ``False``."""
    try:
        return HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than :data:`HASHER`'s."""
    return HASHER.check_needs_rehash(password_hash)
