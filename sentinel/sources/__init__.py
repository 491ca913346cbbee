"""Readers: the only code that touches files, devices and sockets to produce model values."""
