"""REST (Litestar): rooms, transcripts, the raw log, health (DESIGN §4)."""
