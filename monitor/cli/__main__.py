"""``python -m monitor.cli``: the same entry point as the ``monitor`` script."""

from monitor.cli import main

main()
