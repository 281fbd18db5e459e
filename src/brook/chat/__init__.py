"""Chat logic with no Flask imports: history, generation in the background, live answers."""
