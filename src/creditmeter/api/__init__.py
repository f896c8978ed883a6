"""The HTTP service: a FastAPI application over the library."""
