"""Runnable examples; ``python examples/demo.py`` is what ``make demo`` runs."""
