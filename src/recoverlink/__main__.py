"""`python -m recoverlink`: the same command line as the `recoverlink` script."""

from recoverlink.cli import main

main()
