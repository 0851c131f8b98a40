"""``pgqueue retry``: bring jobs back to ``available`` (the dead-letter case first).

``pgqueue retry --state discarded [--queue Q] [--worker W] [--tag T]`` empties the dead
letter (or part of it); ``pgqueue retry 7 9`` retries single jobs. A job that had used
all its attempts gets one more. Executing and available jobs are left alone, and every
id that was not retried is named with the reason.
"""

from __future__ import annotations

from pgqueue import _admin, _ops

from ._selection import Action, command

RETRYABLE_STATES = ("discarded", "cancelled", "retryable", "scheduled", "completed")
RETRY = Action(
    verb="retry",
    done="retried",
    example="pgqueue retry --state discarded",
    on_ids=_admin.retry_jobs,
    on_matching=_ops.retry_matching,
)


retry = command(RETRY, RETRYABLE_STATES, "Retry every job in this state (e.g. discarded).")
