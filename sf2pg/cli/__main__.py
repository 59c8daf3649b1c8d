"""``python -m sf2pg.cli``: the same as the ``sf2pg`` console script."""

from sf2pg.cli.main import run

run()
