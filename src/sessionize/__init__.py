"""sessionize: user sessions from activity streams, in real time and in batch."""

__version__ = "0.1.0"
