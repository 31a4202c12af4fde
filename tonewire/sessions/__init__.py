"""Live sessions: PCM ingest, windowing, speech and tone analysis, fan-out, idle reaper."""
