"""``python -m sim.board --pipeline P``: run the simulated board (same as ``preba sim-board``)."""
import sys

from pyhost.cli import main

if __name__ == "__main__":
    sys.exit(main(["sim-board", *sys.argv[1:]]))
