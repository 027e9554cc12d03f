"""Access tokens the sandbox accepts: issued at start, revoked by an expiry fault, reissued by a login."""
from __future__ import annotations

import secrets
import threading


class Tokens:
    """The set of currently valid tokens. Thread-safe."""

    def __init__(self, prefix: str = "sandbox"):
        self.prefix = prefix
        self._lock = threading.Lock()
        self._valid: set[str] = set()
        self.current = self.issue()

    def issue(self) -> str:
        """A new valid token (a vendor's login route hands it out); it becomes :attr:`current`."""
        token = f"{self.prefix}-{secrets.token_hex(16)}"
        with self._lock:
            self._valid.add(token)
            self.current = token
        return token

    def is_valid(self, token: str | None) -> bool:
        return token is not None and token in self._valid

    def revoke_all(self) -> None:
        """Every token issued so far stops working (an expired session)."""
        with self._lock:
            self._valid.clear()
