"""Readers: the only code that touches files, devices and sockets to produce model values.

The few constants the log readers share live here: ``sentinel parse`` imports this package
before it starts its reader process, and none of the readers' own modules."""

CHUNK = 1 << 20
"""Bytes a log reader asks for at a time."""
GZIP_MAGIC = b"\x1f\x8b"
"""The first bytes of a gzip stream."""
STDIN = "standard input"
"""How standard input is named in messages."""
