"""sessrec: an eBPF enhanced session recorder."""

__version__ = "0.1.0"
