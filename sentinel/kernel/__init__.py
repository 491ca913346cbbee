"""Pure parsing of kernel OOM output: log lines in, kill records out. No I/O."""

from sentinel.kernel.oom import OomParser, parse_lines

__all__ = ["OomParser", "parse_lines"]
