"""Integrations that subscribe to pgqueue events: logging, Prometheus, Sentry.

The core never imports this package; ``pgqueue worker`` wires what is configured.
"""
