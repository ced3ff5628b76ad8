"""Encryption at rest: eventsourcing's AES-GCM cipher, switched on by a store's key.

A key is base64 text (:func:`create_cipher_key` makes one), passed as
``TemporalStore(cipher_key=...)`` or in ``ATLAS_EDA_CIPHER_KEY``. The cipher needs
pycryptodome (the ``crypto`` extra), imported only when a key is used.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import os

from ..errors import StoreOpenError
from .urls import redact_url

__all__ = ["CIPHER_ENV_VAR", "cipher_key_from_env", "cipher_settings", "create_cipher_key"]

CIPHER_ENV_VAR = "ATLAS_EDA_CIPHER_KEY"
"""The environment variable that supplies the cipher key when none is passed."""

_AES_KEY_SIZES = (16, 24, 32)
_NEW_KEY_SIZE = 32


def create_cipher_key() -> str:
    """A new random AES-256 key, base64-encoded, for ``TemporalStore(cipher_key=...)`` or
    ``ATLAS_EDA_CIPHER_KEY``. Keep it safe: a store cannot be read without it. Needs the
    ``crypto`` extra (``pip install atlas_eda[crypto]``)."""
    _require_crypto()
    from eventsourcing.cipher import AESCipher  # noqa: PLC0415  (optional dependency)

    return AESCipher.create_key(_NEW_KEY_SIZE)


def cipher_key_from_env(cipher_key: str | None) -> str | None:
    """``cipher_key``, or when it is ``None`` the one in ``ATLAS_EDA_CIPHER_KEY`` (an empty
    variable counts as none)."""
    if cipher_key is None:
        return os.environ.get(CIPHER_ENV_VAR) or None
    return cipher_key


def cipher_settings(url: str, cipher_key: str | None) -> dict[str, str]:
    """eventsourcing's cipher settings for ``cipher_key`` (or ``ATLAS_EDA_CIPHER_KEY``).
    Without a key they are set empty, so eventsourcing's own ``CIPHER_KEY`` or
    ``CIPHER_TOPIC`` in the environment cannot turn a cipher on behind the store's back.
    A key that is not a base64 AES key is refused with :class:`StoreOpenError`."""
    cipher_key = cipher_key_from_env(cipher_key)
    if cipher_key is None:
        return {"CIPHER_TOPIC": "", "CIPHER_KEY": "", "COMPRESSOR_TOPIC": ""}
    if not isinstance(cipher_key, str):
        raise StoreOpenError(
            f"cipher_key must be a str (base64, as create_cipher_key() returns), got "
            f"{type(cipher_key).__name__}; nothing was opened."
        )
    try:
        size = len(base64.b64decode(cipher_key.encode("ascii"), validate=True))
    except (binascii.Error, UnicodeEncodeError):
        size = -1
    if size not in _AES_KEY_SIZES:
        raise StoreOpenError(
            f"The cipher key for {redact_url(url)!r} is not a base64-encoded 16, 24 or 32-byte "
            f"AES key; nothing was opened. Create one with atlas_eda.store.create_cipher_key()."
        )
    _require_crypto()
    return {
        "CIPHER_TOPIC": "eventsourcing.cipher:AESCipher",
        "CIPHER_KEY": cipher_key,
        "COMPRESSOR_TOPIC": "",
    }


def _require_crypto() -> None:
    if importlib.util.find_spec("Crypto") is None:
        raise StoreOpenError(
            "Encryption at rest needs pycryptodome: install atlas_eda with its crypto extra "
            "(pip install 'atlas_eda[crypto]')."
        )
