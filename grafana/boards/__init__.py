"""The dashboards pgvigil ships, one module each, in the order the generator writes them."""

from boards import maintenance, overview, storage

BOARDS = (overview.BOARD, storage.BOARD, maintenance.BOARD)
