"""Reading session files. Works without BCC and without root.

replay.reader.open_session() is the entry point; it dispatches on the file's
major format version to replay.v1 (one module per major version, kept forever).
"""

from replay import compiled

# The hot modules, compiled with mypyc, when built from these sources (replay/compiled.py).
compiled.activate(__path__)
