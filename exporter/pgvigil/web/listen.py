"""Why a listening socket could not be opened, said with the address and the setting to change
(a bare `OSError: [Errno 98] Address already in use` names neither)."""

from __future__ import annotations

import errno

_REASONS = {
    errno.EADDRINUSE: "the address is already in use (another pgvigil or exporter runs there?)",
    errno.EADDRNOTAVAIL: "no network interface of this machine has that address",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def bind_problem(e: OSError, address: str, setting: str) -> str | None:
    """One line for a bind failure, or None when e is not one."""
    reason = _REASONS.get(e.errno or 0)
    if reason is None:
        return None
    return f"cannot listen on {address}: {reason}; choose another with {setting}"
