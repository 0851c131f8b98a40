"""Circuit breakers: one per destination (a broker, a bucket), per process.

A long outage must not burn every job's attempts. The breaker counts transport
failures in a row; at ``threshold`` it opens and jobs for that destination snooze
(``pgqueue.Snooze``, attempt budget kept) instead of failing. After ``cooldown``
seconds one job is let through as the probe (half-open): its success closes the
circuit, its transport failure opens it again for another cooldown. A transport failure
costs a job an attempt only while the outage is news (the circuit closed): a failed
probe, or a job that was already under way when the circuit opened, snoozes like the
others, or else a long outage would still discard jobs, one probe at a time (within the
job's patience: ``_pipeline.through``). Any answer from the
destination, even a refusal (bad credentials, no such bucket), proves it reachable and
counts as a success here: those errors fail the job as usual, not the circuit.

``CircuitBreaker`` is the state machine with injected ``clock`` and ``rng`` and no I/O;
``breaker_for`` keeps one per destination name, logs every change of state and emits
the ``breaker_change`` event the Prometheus integration exports, on every change of
state and of the failure count (the gauge of failures would otherwise show the count
of the last change of state: 0 while a closed circuit counts towards opening).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .. import _events
from .._outcomes import Snooze
from ._config import BreakerSettings

log = logging.getLogger("pgqueue.builtins.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
TRANSPORT, ANSWERED = "transport", "answered"  # verdicts of a guard's classify

OnChange = Callable[["CircuitBreaker", str, str], None]
OnFailures = Callable[["CircuitBreaker"], None]


class CircuitBreaker:
    """The breaker of one destination. Thread-safe; every method returns at once.

    ``admit()`` is called before using the destination: ``None`` means go ahead, a
    number is how many seconds the caller should snooze. The caller then reports
    ``succeeded()`` or ``failed()`` (transport failures only).
    """

    def __init__(
        self,
        name: str,
        *,
        threshold: int = 5,
        cooldown: float = 30.0,
        probe_lease: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        on_change: OnChange | None = None,
        on_failures: OnFailures | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {threshold}")
        if not cooldown > 0:
            raise ValueError(f"cooldown must be > 0 seconds, got {cooldown}")
        self.name = name
        self.threshold = threshold
        self.cooldown = cooldown
        # A probe that never reports (its thread hung, its process is being stopped)
        # must not keep the circuit half-open for ever: after the lease another may go.
        self.probe_lease = max(cooldown, 30.0) if probe_lease is None else probe_lease
        self._clock = clock
        self._rng = rng
        self._on_change = on_change
        self._on_failures = on_failures
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0  # transport failures in a row
        self._opened_at = 0.0
        self._probe_at: float | None = None  # when the current probe was let through
        self._probe = 0  # the current probe's number: only it may hand its turn back

    @property
    def state(self) -> str:
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def admit(self) -> float | None:
        """``None`` to go ahead, else the seconds to snooze before trying again."""
        return self.admission()[0]

    def admission(self) -> tuple[float | None, int | None]:
        """``admit()``, and the probe's number when the caller is the half-open probe
        (else None): the number to hand to ``released``."""
        with self._lock:
            now = self._clock()
            if self._state == CLOSED:
                return None, None
            if self._state == OPEN:
                remaining = self._opened_at + self.cooldown - now
                if remaining > 0:
                    return self._spread(remaining), None
                self._change(HALF_OPEN, self._failures)
                return None, self._let_probe(now)
            # Half-open: one probe at a time, a new one only if the last one went silent.
            if self._probe_at is None or now - self._probe_at >= self.probe_lease:
                return None, self._let_probe(now)
            return self._spread(self.cooldown / 2), None

    def _let_probe(self, now: float) -> int:
        self._probe_at = now
        self._probe += 1
        return self._probe

    def succeeded(self) -> None:
        """The destination answered."""
        with self._lock:
            self._probe_at = None
            self._change(CLOSED, 0)

    def failed(self) -> bool:
        """The destination could not be reached (connection refused, reset, timed out...).

        Returns whether the circuit was already open or half-open: the outage was known,
        so the failure tells nothing about the job."""
        with self._lock:
            known = self._state != CLOSED
            failures = self._failures + 1
            if self._state == HALF_OPEN or (self._state == CLOSED and failures >= self.threshold):
                self._opened_at = self._clock()
                self._probe_at = None
                self._change(OPEN, failures)
            else:
                self._change(self._state, failures)
            return known

    def released(self, probe: int | None = None) -> None:
        """The attempt ended without telling anything about the destination (a local
        error): a half-open circuit lets the next job probe instead.

        ``probe`` is the number ``admission()`` gave the attempt. With it, only the
        current probe hands its turn back: a late release from an earlier probe whose
        lease ran out must not let a second probe join the current one (``guard``
        passes it, and releases nothing for an attempt that was not the probe). Without
        it (a caller of ``admit()``), the current probe's turn ends, as it always did.
        """
        with self._lock:
            if probe is None or probe == self._probe:
                self._probe_at = None

    @contextmanager
    def guard(self, classify: Callable[[Exception], str]) -> Iterator[None]:
        """Run the block if admitted (else raise ``Snooze``) and record how it went.

        ``classify(exc)`` says what an exception means for the circuit: ``"transport"``
        (unreachable: a failure), ``"answered"`` (the destination replied, even with a
        refusal: a success) or anything else (nothing learnt). A transport failure while
        the circuit was already open or half-open (a failed probe) raises ``Snooze``
        from it instead: the job waits for the next probe with its budget kept.
        """
        wait, probe = self.admission()
        if wait is not None:
            raise Snooze(wait)
        try:
            yield
        except Exception as exc:
            verdict = classify(exc)
            if verdict == TRANSPORT:
                if self.failed():
                    raise Snooze(self._spread(self.cooldown)) from exc
            elif verdict == ANSWERED:
                self.succeeded()
            elif probe is not None:  # only the probe has a turn to hand back
                self.released(probe)
            raise
        except BaseException:
            if probe is not None:
                self.released(probe)
            raise
        else:
            self.succeeded()

    def _spread(self, seconds: float) -> float:
        # Jobs that snooze together would come back together: spread them over half a
        # cooldown so the probe meets a trickle, not a herd.
        return round(max(seconds, 0.05) + self._rng() * self.cooldown / 2, 3)

    def _change(self, state: str, failures: int) -> None:
        """Set the state and the count, and report what changed: a change of state to
        ``on_change`` (the count comes with it), a change of the count alone to
        ``on_failures``."""
        old, self._state = self._state, state
        counted, self._failures = self._failures, failures
        if old != state:
            if self._on_change is not None:
                self._on_change(self, old, state)
        elif counted != failures and self._on_failures is not None:
            self._on_failures(self)


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def _report(breaker: CircuitBreaker, old: str, new: str) -> None:
    if new == OPEN:
        log.warning(
            "circuit breaker %s: %s -> open after %d transport failure(s) in a row; "
            "its jobs snooze for %g s, then one probe tries again",
            breaker.name,
            old,
            breaker.failures,
            breaker.cooldown,
        )
    else:
        log.info("circuit breaker %s: %s -> %s", breaker.name, old, new)
    _emit(breaker)


def _emit(breaker: CircuitBreaker) -> None:
    _events.emit(
        "breaker_change", name=breaker.name, state=breaker.state, failures=breaker.failures
    )


def breaker_for(name: str, settings: BreakerSettings | None = None) -> CircuitBreaker:
    """This process's breaker for the destination ``name`` (created on first use).

    ``settings``, when given, apply to a new breaker or replace an existing one's.
    """
    with _breakers_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            settings = settings or BreakerSettings()
            breaker = _breakers[name] = CircuitBreaker(
                name,
                threshold=settings.threshold,
                cooldown=settings.cooldown,
                on_change=_report,
                on_failures=_emit,
            )
        elif settings is not None and (breaker.threshold, breaker.cooldown) != (
            settings.threshold,
            settings.cooldown,
        ):
            with breaker._lock:
                breaker.threshold, breaker.cooldown = settings.threshold, settings.cooldown
                breaker.probe_lease = max(settings.cooldown, 30.0)
        return breaker


def breakers() -> dict[str, CircuitBreaker]:
    """A copy of this process's breakers, by destination name."""
    with _breakers_lock:
        return dict(_breakers)


def reset_breakers() -> None:
    """Forget every breaker (tests)."""
    with _breakers_lock:
        _breakers.clear()
