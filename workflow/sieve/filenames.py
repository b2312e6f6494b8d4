"""File names that are not valid UTF-8, kept losslessly and shown printably.

On POSIX a file name is bytes; Python decodes it with ``surrogateescape``, so ``b'x\\xe9\\xff.png'`` becomes a
``str`` holding lone surrogates that opens the file but cannot be written as UTF-8 (to HDF5, JSON, a log).
sieve keeps two forms of such a name:

- :func:`printable_name`, what results show (HDF5 ``images``, neuron JSON ``path``, messages, logs): valid
  UTF-8 names unchanged, the undecodable bytes of others as ``\\xe9`` escapes. Files are never looked up by
  this form: later stages reopen probe images by their index in the probe set.
- :func:`raw_name`, the exact bytes (``os.fsencode``), stored beside it (HDF5 ``image_names_raw``) so the file
  can always be found by name; :func:`from_raw` turns them back into the ``str`` that opens the file.
"""

from __future__ import annotations

import os


def is_printable(name: str) -> bool:
    """True when ``name`` can be written as UTF-8 as it is (no lone surrogates from undecodable bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """``name`` with each undecodable byte written as a ``\\xNN`` escape: always encodable as UTF-8."""
    if is_printable(name):
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def raw_name(name: str) -> bytes:
    """The exact bytes of a file name, as the file system holds them."""
    return os.fsencode(name)


def from_raw(raw: bytes) -> str:
    """The ``str`` that opens the file whose name is ``raw`` (inverse of :func:`raw_name`)."""
    return os.fsdecode(raw)
