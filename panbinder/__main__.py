"""``python -m panbinder``: the ``panbinder`` command."""

from .cli import main

main()
