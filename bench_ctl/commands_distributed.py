"""Distributed commands (submit, status, collect, workers, runs, cancel): added in a later step."""
