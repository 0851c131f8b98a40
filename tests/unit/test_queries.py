import re

from pgqueue.sql import queries

SCHEMA = '"we""ird schema"'


def test_every_query_composes_and_quotes_the_schema() -> None:
    q = queries('we"ird schema')
    assert {"fetch_jobs", "ack_jobs", "insert_jobs", "stage_jobs"} <= set(q.names())
    for name in q.names():
        text = getattr(q, name)
        assert "{schema}" not in text and "{job_columns}" not in text, name
        # Every table reference is qualified by the quoted schema identifier.
        bare = re.sub(re.escape(SCHEMA) + r"\.pgqueue_", "", text)
        assert not re.search(
            r"\bpgqueue_(jobs|migrations|state)\b(?!')", bare.replace("'.pgqueue_jobs'", "")
        ), name


def test_claim_columns_are_jobs_first_fields_in_order() -> None:
    # Engine._fetch builds a Job from a claimed row positionally (claimed_row).
    from pgqueue._engine import _JOB_ORDER
    from pgqueue.sql import _raw

    body = "\n".join(
        line for line in _raw()["claim_columns"].splitlines() if not line.lstrip().startswith("--")
    )
    names = [item.split()[-1] for item in body.split(",")]
    assert tuple(names) == _JOB_ORDER[: len(names)]
