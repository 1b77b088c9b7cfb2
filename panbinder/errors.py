"""The one error type that reaches users.

``message`` is shown to the user and says what to do next; ``log_message`` is for operators
only; ``reason`` is a short machine-readable code; ``status_code`` is the HTTP status to use.
"""

from __future__ import annotations


class PanbinderError(Exception):
    def __init__(
        self,
        message: str,
        *,
        reason: str = "error",
        log_message: str | None = None,
        status_code: int = 400,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.log_message = log_message or message
        self.status_code = status_code

    def __str__(self) -> str:
        return self.message
