"""The dashboards pgvigil ships, one module each, in the order the generator writes them."""

from boards import diagnostics, maintenance, overview, storage

BOARDS = (overview.BOARD, storage.BOARD, maintenance.BOARD, diagnostics.BOARD)
