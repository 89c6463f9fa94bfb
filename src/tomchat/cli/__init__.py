"""The ``tomchat`` command line."""

from tomchat.cli.main import main

__all__ = ["main"]
