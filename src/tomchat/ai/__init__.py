"""Providers behind small Protocols: text (ChatModel), voice out (Speech), voice in (Transcriber)."""
