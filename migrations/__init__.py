"""pgqueue's numbered SQL migrations, shipped inside the wheel as ``pgqueue.migrations``."""
