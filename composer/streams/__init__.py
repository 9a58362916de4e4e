"""Byte streams both phases use: THE digest-verifying reader and the hashing writer
(``digest``), THE gzip writer (``gz``: deterministic, parallel, block layout independent of the
thread count) and write-behind (``behind``). Nothing here knows about images or formats."""
