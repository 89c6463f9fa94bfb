"""Local servers that speak the real wire protocols of the AI services tomchat talks to.

They run on 127.0.0.1 at a random port, each in its own thread with its own event loop, so
the real clients (httpx, fish-audio-sdk) and even a separate server process can reach them
whatever the test's own loop is doing.
"""
