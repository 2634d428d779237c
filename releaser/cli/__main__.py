"""`python -m releaser.cli`: the same as the `releaser` command."""

from . import main

main()
