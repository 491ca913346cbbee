"""sentinel: keeps memory-leaking containers from dying silently."""

__version__ = "0.1.0"
