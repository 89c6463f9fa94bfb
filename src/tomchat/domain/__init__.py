"""The pure core: event types, their serialisation and the transcript fold. No I/O here."""
