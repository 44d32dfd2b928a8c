"""``python -m gateway`` runs the ``xgw`` command line."""

from gateway.cli import main

main()
