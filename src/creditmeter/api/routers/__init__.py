"""Thin endpoints: authenticate, call the library, shape the response."""
