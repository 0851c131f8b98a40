"""``python -m pgqueue`` is the ``pgqueue`` command."""

from .cli import main

main()
