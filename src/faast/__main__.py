"""``python -m faast``: the command line (also what ``torchrun -m faast`` launches)."""

from faast.cli import run

if __name__ == "__main__":
    run()
