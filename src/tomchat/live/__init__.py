"""Socket.IO: the live rooms (DESIGN §3)."""
