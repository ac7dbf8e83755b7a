"""Upswing's command line and local stack (they call the functions; nothing in shared/ calls them)."""
