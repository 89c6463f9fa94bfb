"""tomchat: a multiplayer AI character chat server with a durable event log."""

__version__ = "0.1.0"
