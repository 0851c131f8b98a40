"""Job states and which of them are final. Names match the ``pgqueue_state`` enum."""

from __future__ import annotations

from typing import Final, Literal

State = Literal[
    "scheduled", "available", "executing", "retryable", "completed", "discarded", "cancelled"
]

STATES: Final[tuple[State, ...]] = (
    "scheduled",
    "available",
    "executing",
    "retryable",
    "completed",
    "discarded",
    "cancelled",
)
FINAL_STATES: Final[frozenset[str]] = frozenset({"completed", "discarded", "cancelled"})
