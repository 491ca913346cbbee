"""Pure parsing of kernel OOM output: log lines in, kill records out. No I/O.

The package re-exports nothing: ``sentinel parse`` imports :mod:`.search` alone before it
starts its reader process, and the parser's modules after (import what you use from
:mod:`.oom`, :mod:`.scan`, :mod:`.lines`)."""
