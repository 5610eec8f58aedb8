"""Subcommands of the ``sn29`` console script (see :mod:`sn29_growth.cli`)."""
