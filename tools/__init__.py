"""Host-side tools (scripts/ calls them); not part of the adapter image."""
