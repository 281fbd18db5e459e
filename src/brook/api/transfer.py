"""Export and import of conversations (issue 16; being written)."""
