"""API keys of the service: create (the secret is shown once), list, revoke, verify.

A key reads ``rk_<key_id>_<secret>``: ``key_id`` (12 hex digits) is public and names the key in
``retention apikey list`` and in the store; ``secret`` is 256 random bits. The store keeps, per
key, a random salt and the HMAC-SHA-256 of the secret under it (table ``api_keys``), never the
secret. A slow password hash (scrypt, bcrypt) would add nothing here: it protects guessable
passwords, and a 256-bit random secret cannot be guessed; a fast keyed hash keeps every request's
check to microseconds.

Scopes are ordered: ``read`` < ``write`` < ``admin``; a key of a scope may do what the scopes
below it may.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from retention.data import Store
from retention.exceptions import ConfigError, NotFoundError
from retention.workflows._common import json_clean

__all__ = [
    "SCOPES",
    "ApiKey",
    "ApiKeyRequest",
    "KeyRing",
    "NewApiKey",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "scope_allows",
    "touch_api_keys",
]

#: the scopes, weakest first: each may do what the ones before it may
SCOPES: tuple[str, ...] = ("read", "write", "admin")

_TABLE = "api_keys"
_PREFIX = "rk_"
_KEY = re.compile(r"^rk_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_MAX_NAME = 100


def scope_allows(have: str, need: str) -> bool:
    """Whether a key of scope ``have`` may do what needs scope ``need``."""
    if need not in SCOPES:
        raise ConfigError(f"Unknown scope {need!r}; choose from {', '.join(SCOPES)}.")
    return have in SCOPES and SCOPES.index(have) >= SCOPES.index(need)


def _check_scope(scope: Any) -> str:
    if not isinstance(scope, str) or scope.strip().lower() not in SCOPES:
        raise ConfigError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}.")
    return scope.strip().lower()


def _check_key_id(key_id: Any) -> str:
    kid = str(key_id).strip().lower() if key_id is not None else ""
    if kid.startswith(_PREFIX):  # a whole key was passed: take its id, ignore the secret
        match = _KEY.match(kid) or re.match(r"^rk_([0-9a-f]{12})_", kid)
        kid = match.group(1) if match else kid
    if not _KEY_ID.match(kid):
        raise ConfigError(
            "A key id is the 12 hex digits after 'rk_' (see `retention apikey list`); got "
            f"{len(kid)} character(s) that are not one."
        )
    return kid


def _hash(salt_hex: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt_hex), secret.encode("ascii"), hashlib.sha256).hexdigest()


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")


def _ts(value: Any) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value)


@dataclass(frozen=True)
class ApiKeyRequest:
    """A key to create.

    Attributes
    ----------
    scope : str
        ``read``, ``write`` or ``admin``.
    name : str or None
        A label (who or what uses the key), at most 100 printable characters.
    """

    scope: str = "read"
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", _check_scope(self.scope))
        if self.name is not None:
            name = str(self.name).strip()
            if not name or len(name) > _MAX_NAME or not name.isprintable():
                raise ConfigError(
                    f"name must be 1 to {_MAX_NAME} printable characters; got {len(name)} "
                    "character(s)."
                )
            object.__setattr__(self, "name", name)


@dataclass(frozen=True)
class ApiKey:
    """One key as listed: everything but the secret (which is nowhere to be listed).

    Attributes
    ----------
    key_id : str
    name : str or None
    scope : str
    created_at : pd.Timestamp
    revoked_at : pd.Timestamp or None
    last_used_at : pd.Timestamp or None
    """

    key_id: str
    name: str | None
    scope: str
    created_at: pd.Timestamp
    revoked_at: pd.Timestamp | None = None
    last_used_at: pd.Timestamp | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return json_clean(
            {
                "key_id": self.key_id,
                "name": self.name,
                "scope": self.scope,
                "active": self.active,
                "created_at": self.created_at,
                "revoked_at": self.revoked_at,
                "last_used_at": self.last_used_at,
            }
        )


@dataclass(frozen=True)
class NewApiKey:
    """A key just created: the only time its secret exists outside the caller's hands."""

    key: str
    info: ApiKey

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the key (shown once)."""
        return {"key": self.key, **self.info.to_dict()}


def _rows(store: Store) -> pd.DataFrame:
    return store.table_df(_TABLE)


def _info(row: Mapping[Any, Any]) -> ApiKey:
    name = row.get("name")
    return ApiKey(
        key_id=str(row["key_id"]),
        name=None if name is None or pd.isna(name) else str(name),
        scope=str(row["scope"]),
        created_at=pd.Timestamp(row["created_at"]),
        revoked_at=_ts(row.get("revoked_at")),
        last_used_at=_ts(row.get("last_used_at")),
    )


def _write_row(store: Store, row: Mapping[Any, Any]) -> None:
    df = pd.DataFrame([dict(row)])
    for col in ("created_at", "revoked_at", "last_used_at"):
        df[col] = pd.Series([row.get(col)], dtype="datetime64[ns]")
    store.replace_rows(_TABLE, df, {"key_id": str(row["key_id"])})


def create_api_key(store: Store, request: ApiKeyRequest) -> NewApiKey:
    """Create a key; its secret is in the result only, never in the store.

    Parameters
    ----------
    store : Store
        Opened for writing.
    request : ApiKeyRequest
        Scope and label.

    Returns
    -------
    NewApiKey
        ``key`` (``rk_<key_id>_<secret>``: give it to the client now) and what is stored.
    """
    store.check_writable("create an API key")
    taken = set(_rows(store)["key_id"].astype(str))
    key_id = secrets.token_hex(6)
    while key_id in taken:  # pragma: no cover - 48 random bits
        key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    row = {
        "key_id": key_id,
        "name": request.name,
        "scope": request.scope,
        "salt": salt,
        "key_hash": _hash(salt, secret),
        "created_at": _now(),
        "revoked_at": None,
        "last_used_at": None,
    }
    _write_row(store, row)
    return NewApiKey(key=f"{_PREFIX}{key_id}_{secret}", info=_info(row))


def list_api_keys(store: Store, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key (oldest first), without secrets or hashes."""
    df = _rows(store).sort_values(["created_at", "key_id"])
    keys = [_info(r) for r in df.to_dict("records")]
    return keys if include_revoked else [k for k in keys if k.active]


def revoke_api_key(store: Store, key_id: str) -> ApiKey:
    """Revoke a key (by its id, or the whole key); revoking it again changes nothing.

    Raises
    ------
    NotFoundError
        No key of that id.
    """
    store.check_writable("revoke an API key")
    kid = _check_key_id(key_id)
    df = _rows(store)
    found = df[df["key_id"].astype(str) == kid]
    if found.empty:
        raise NotFoundError(
            f"No API key {kid} in this store: list them with `retention apikey list`."
        )
    row = found.iloc[0].to_dict()
    if _ts(row.get("revoked_at")) is None:
        row["revoked_at"] = _now()
        _write_row(store, row)
    return _info(row)


def touch_api_keys(store: Store, used: Mapping[str, pd.Timestamp]) -> int:
    """Set ``last_used_at`` of the keys in ``used`` (``{key_id: when}``); returns how many."""
    if not used:
        return 0
    store.check_writable("record when API keys were used")
    df = _rows(store)
    n = 0
    with store.transaction():
        for row in df[df["key_id"].astype(str).isin(list(used))].to_dict("records"):
            row["last_used_at"] = pd.Timestamp(used[str(row["key_id"])])
            _write_row(store, row)
            n += 1
    return n


class KeyRing:
    """The store's keys in memory, to check a presented key without a query.

    A service loads it once and :meth:`reload` s it after it changes the keys itself (no other
    process can write the store while the service holds it).

    Examples
    --------
    >>> ring = KeyRing.load(store)  # doctest: +SKIP
    >>> ring.verify("rk_0123456789ab_...")  # doctest: +SKIP
    ApiKey(key_id='0123456789ab', ..., scope='read', ...)
    """

    def __init__(self, rows: Iterable[Mapping[Any, Any]] = ()) -> None:
        self._keys: dict[str, tuple[str, str, ApiKey]] = {}
        for row in rows:
            info = _info(row)
            self._keys[info.key_id] = (str(row["salt"]), str(row["key_hash"]), info)

    @classmethod
    def load(cls, store: Store) -> KeyRing:
        """The keys of ``store``."""
        return cls(_rows(store).to_dict("records"))

    def __len__(self) -> int:
        return len(self._keys)

    def n_active(self) -> int:
        """Keys not revoked."""
        return sum(1 for _, _, k in self._keys.values() if k.active)

    def verify(self, presented: str | None) -> ApiKey | None:
        """The key ``presented`` is, when it is well formed, known, not revoked and its secret
        matches (compared in constant time); else None."""
        if not presented or len(presented) > 80:
            return None
        match = _KEY.match(presented.strip())
        if match is None:
            return None
        found = self._keys.get(match.group(1))
        if found is None:
            return None
        salt, expected, info = found
        if not hmac.compare_digest(_hash(salt, match.group(2)), expected):
            return None
        return info if info.active else None
