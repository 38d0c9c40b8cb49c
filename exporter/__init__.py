"""Prometheus exporter for Unpod campaign analytics."""

__version__ = "0.1.0"
