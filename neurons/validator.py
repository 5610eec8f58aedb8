"""SN29 validator entry point: parse flags and run the loop (see ``--help``)."""

import sys

from sn29_growth.validator.cli import main

if __name__ == "__main__":
    sys.exit(main())
