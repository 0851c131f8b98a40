"""``pgqueue cancel``: stop jobs for good (they end ``cancelled``).

``pgqueue cancel 7 9`` cancels single jobs; ``pgqueue cancel --state available --queue
media [--worker W] [--tag T]`` cancels every match (in batches), e.g. a flood of jobs
enqueued by mistake. An executing job is cancelled in its row at once and its node is
told to stop it (async: the task is cancelled; sync: ``job.cancel_requested``); its late
result is ignored.
"""

from __future__ import annotations

import functools

from pgqueue import _admin, _ops

from ._selection import Action, command

CANCELLABLE_STATES = ("available", "scheduled", "retryable", "executing")
BATCH = 5_000
CANCEL = Action(
    verb="cancel",
    done="cancelled",
    example="pgqueue cancel --state available --queue Q",
    on_ids=_admin.cancel_jobs,
    on_matching=functools.partial(_ops.apply_matching, action=_admin.cancel_jobs, batch=BATCH),
)


cancel = command(
    CANCEL, CANCELLABLE_STATES, "Cancel every job in this state (with the filters below)."
)
