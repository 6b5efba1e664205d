"""Catalogue admin pages, one module per sub-domain. Views only translate HTTP to services."""
