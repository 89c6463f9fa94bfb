"""REST (Litestar): rooms, transcripts, the raw log, health."""
