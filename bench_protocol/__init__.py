"""What the controller and the workers agree on: specs, record schemas, the Redis key layout.

Imports neither torch nor celery, so both sides (and a laptop controller) can use it.
"""
