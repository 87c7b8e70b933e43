"""`mattebridge`: the command line, above the core library and the server."""
