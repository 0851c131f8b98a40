"""A worker's name must be one a job row can hold as given, checked when it is defined."""

from __future__ import annotations

import pytest

import pgqueue
from pgqueue import ConfigError
from pgqueue._registry import lookup


def _job(job: pgqueue.Job) -> None:
    return None


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mail\x00send", r"NUL character"),
        ("\x00", r"NUL character"),
        ("files/\udcff", r"not UTF-8"),
        ("", r"1-255 characters"),
        ("w" * 256, r"1-255 characters"),
        (42, r"1-255 characters"),
    ],
    ids=["nul", "only-nul", "surrogate", "empty", "too-long", "not-text"],
)
@pytest.mark.parametrize("form", ["class", "function"])
def test_a_worker_name_a_row_cannot_hold_is_refused_at_definition(
    form: str, name: object, message: str
) -> None:
    # libpq sends a name with a NUL cut at the NUL on the single-enqueue fast path:
    # the row would have named another worker ("mail"). Refused when the worker is
    # defined (registered), with what was given; nothing is registered.
    with pytest.raises(ConfigError, match=message) as info:
        if form == "class":
            type("Bad", (pgqueue.Worker,), {"name": name, "perform": lambda self, job: None})
        else:
            pgqueue.worker(name=name)(_job)  # type: ignore[arg-type]
    assert repr(name)[:40] in str(info.value) and "\n" not in str(info.value)
    if isinstance(name, str):
        assert lookup(name) is None
    if name == "mail\x00send":
        assert lookup("mail") is None


def test_a_fine_name_still_registers_and_enqueues(client: pgqueue.Client, db) -> None:
    @pgqueue.worker(name="mail.send-é \u2603")
    def send(job: pgqueue.Job) -> None:
        return None

    job = send.enqueue({"to": "a"}, client=client)
    row = db.execute("SELECT worker FROM pgqueue_jobs WHERE id = %s", (job.id,)).fetchone()
    assert row == ("mail.send-é \u2603",) and lookup("mail.send-é \u2603") is send
