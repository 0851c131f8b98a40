"""``make bench``: pgqueue's throughput and latency, the SQL-only ceiling, and the peers.

Run ``python -m tests.bench --help``; docs/bench.md explains the workloads. Nothing here
is collected by pytest (no ``test_`` modules) and nothing here is imported by pgqueue.
"""
