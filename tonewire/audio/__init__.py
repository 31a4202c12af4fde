"""Audio sources: streaming file decode (PyAV); later PCM frames and URL fetch."""
