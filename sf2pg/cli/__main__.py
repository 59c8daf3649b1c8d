"""``python -m sf2pg.cli``."""

from sf2pg.cli.main import main

main()
