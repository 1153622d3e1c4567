"""`python -m agentry_memory`: the same entry point as the `agentry-memory` script."""

from agentry_memory.main import main

main()
