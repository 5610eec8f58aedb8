"""SN29 miner entry point: parse flags and run the miner once (see ``--help``)."""

import sys

from sn29_growth.miner.cli import main

if __name__ == "__main__":
    sys.exit(main())
