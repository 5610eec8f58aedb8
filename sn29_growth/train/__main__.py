"""``python -m sn29_growth.train MODEL_DIR OUT_DIR [flags]`` — the same as ``sn29 train``; the form to
launch under ``torchrun --nproc_per_node=N -m sn29_growth.train ...``."""

import sys

from sn29_growth.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
