"""``python -m arcuate`` is the ``arcuate`` command."""

from arcuate.frontends.cli import program

program()
