"""The built-in workers with a budget of 4 attempts: the ``--app`` of the outage tests.

Subclassing is how an app changes a built-in worker's defaults; a subclass registers
under its own name, which the pipeline's steps then list.
"""

from __future__ import annotations

from pgqueue.builtins import AmqpFanout, B2Upload

ATTEMPTS = 4


class TightB2Upload(B2Upload):
    max_attempts = ATTEMPTS


class TightAmqpFanout(AmqpFanout):
    max_attempts = ATTEMPTS
