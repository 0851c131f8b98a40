"""What the acker lends to a claim: plain completions only, and never more than asked."""

from __future__ import annotations

from pgqueue._acker import Acker
from pgqueue._outcomes import Transition


def test_a_claim_takes_plain_completions_and_leaves_every_other_outcome() -> None:
    acker = Acker(engine=None)  # type: ignore[arg-type]  # take() never touches it
    failed = Transition(2, 1, "retryable", delay=5.0, error={"error": "E"})
    with_meta = Transition(4, 1, "completed", meta={"result": 1})
    plain = [Transition(i, 1, "completed") for i in (1, 3, 5, 6)]
    for t in (plain[0], failed, plain[1], with_meta, plain[2], plain[3]):
        acker.push(t)

    taken = acker.take(3)
    assert taken == plain[:3]
    assert acker.pending == 3  # the failure, the meta update and the completion left over
    assert acker.pending_ids() == {1, 2, 3, 4, 5, 6}  # lent ones are still pending
    assert acker.take(10) == [plain[3]]
    assert acker.take(10) == []  # only outcomes a claim cannot carry are left

    acker.settle(taken, written=True)
    assert acker.pending_ids() == {2, 4, 6}
    acker.settle([plain[3]], written=False)  # the claim failed: the acker writes it
    assert sorted(t.id for t in acker._buffer) == [2, 4, 6]
