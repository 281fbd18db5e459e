"""Search over an owner's conversations: GET /api/search (issue 16; being written)."""
