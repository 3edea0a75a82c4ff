"""`python -m pianomuse` (used under `torchrun`), the same as the `pianomuse` command."""

from pianomuse.cli import main

main()
