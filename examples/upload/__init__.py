"""The upload pipeline: an HTTP endpoint, the built-in workers, and an event consumer."""
