"""tonewire: analyse audio as it arrives and stream the results."""

__version__ = "0.1.0"
