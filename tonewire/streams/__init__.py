"""Streams are the spine: every job and session owns an append-only, ordered event log.

Producers append (the store keeps the log, the bus carries new events between processes);
transports follow a stream from any ``seq`` without gaps or duplicates.
"""
