"""Shared-memory data plane: object references, the session arena and Arrow views."""
