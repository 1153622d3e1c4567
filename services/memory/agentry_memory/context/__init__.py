"""A turn's context: the token window, the rolling summary and its model, token counting."""
