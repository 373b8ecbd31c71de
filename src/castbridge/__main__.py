"""Entry point for `python -m castbridge`."""

from castbridge.cli import main

main()
