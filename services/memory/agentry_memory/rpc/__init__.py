"""The memory RPC server and its request handlers, one module per family."""
