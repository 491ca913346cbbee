"""Wiring: the monitor, the daemon, its scheduler, health and metrics endpoints."""
