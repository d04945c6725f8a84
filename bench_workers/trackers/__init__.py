"""Trackers: one small class per kind of measurement.

Each has ``track()``, a context manager around the timed window, and ``result()``, a plain
dict of metrics. A tracker that cannot measure returns ``{"available": False, "reason": ...}``
and nulls — never a made-up number. Samplers sleep between samples so they do not steal the
CPU they measure.
"""
