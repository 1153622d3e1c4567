"""`agentry-admin`: what an operator does to a running namespace, over the broker."""
