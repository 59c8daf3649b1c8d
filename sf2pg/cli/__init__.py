"""The ``sf2pg`` command line (``main``) and its demo and dev stack commands (``demo``)."""
