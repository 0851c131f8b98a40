"""Worker modules that test subprocesses load with ``pgqueue worker --app tests.apps.X``."""
