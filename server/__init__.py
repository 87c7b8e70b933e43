"""The ZeroMQ matte server."""
