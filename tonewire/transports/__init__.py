"""Thin adapters from HTTP, SSE and Socket.IO to the services. No domain logic lives here."""
