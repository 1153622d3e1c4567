"""Lets `python -m agentry_offline_model` behave like the console script."""

from agentry_offline_model.main import main

main()
