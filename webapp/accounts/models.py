"""Roles are Django groups; no models of our own."""
