"""The SQL event store: the append-only log, its projections and the reads built on them."""
