import pytest

import pgqueue
from pgqueue import ConfigError
from pgqueue._registry import lookup


class Plain(pgqueue.Worker):
    def perform(self, job: pgqueue.Job) -> None:
        return None


class Configured(pgqueue.Worker):
    name = "custom.name"
    queue = "media"
    priority = 3
    max_attempts = 5
    unique = pgqueue.Unique(period=30)

    async def perform(self, job: pgqueue.Job) -> None:
        return None


@pgqueue.worker(queue="mail", max_attempts=4)
def send(job: pgqueue.Job) -> str:
    return f"sent {job.args['to']}"


def test_classes_register_under_module_and_name() -> None:
    assert Plain.name == f"{__name__}.Plain"
    assert lookup(Plain.name) is Plain
    assert lookup("custom.name") is Configured
    assert Configured.is_async and not Plain.is_async


def test_new_applies_class_defaults_and_overrides() -> None:
    spec = Configured.new({"a": 1})
    assert (spec.worker, spec.queue, spec.priority, spec.max_attempts) == (
        "custom.name",
        "media",
        3,
        5,
    )
    assert spec.unique == pgqueue.Unique(period=30)
    spec = Configured.new({"a": 1}, queue="other", priority=0, unique=None)
    assert (spec.queue, spec.priority, spec.unique) == ("other", 0, None)


def test_function_form_registers_and_stays_callable() -> None:
    assert send.name == f"{__name__}.send"
    assert lookup(send.name) is send
    assert send.queue == "mail" and send.max_attempts == 4
    assert send.run(pgqueue.Job(id=1, worker=send.name, args={"to": "x"})) == "sent x"


def test_a_worker_without_perform_is_an_error() -> None:
    with pytest.raises(ConfigError, match="must define perform"):

        class NoPerform(pgqueue.Worker):
            pass


def test_abstract_bases_are_not_registered() -> None:
    class Base(pgqueue.Worker, abstract=True):
        queue = "shared"

    class Concrete(Base):
        def perform(self, job: pgqueue.Job) -> None:
            return None

    assert lookup(f"{__name__}.{Base.__qualname__}") is None
    assert Concrete.queue == "shared"


@pytest.mark.parametrize(
    "attrs",
    [{"queue": "bad queue"}, {"priority": 11}, {"max_attempts": 0}, {"timeout": 0}, {"unique": 60}],
)
def test_bad_class_settings_fail_at_definition(attrs: dict) -> None:
    with pytest.raises(ConfigError):
        type("Bad", (pgqueue.Worker,), {**attrs, "perform": lambda self, job: None})


def test_two_workers_cannot_share_a_name() -> None:
    with pytest.raises(ConfigError, match="two workers are registered"):
        type("Clash", (pgqueue.Worker,), {"name": "custom.name", "perform": lambda self, job: None})
