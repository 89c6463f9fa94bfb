"""Socket.IO: the live rooms."""
