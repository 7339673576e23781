"""`python -m indexops.cli`."""

from indexops.cli import main

main()
