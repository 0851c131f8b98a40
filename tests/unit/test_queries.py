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
