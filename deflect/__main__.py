"""`python -m deflect`: the same as the `deflect` command (how `deflect serve --workers` starts its workers)."""

from .cli import main

main(prog_name="deflect")
