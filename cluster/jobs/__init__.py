"""Ray jobs: entrypoints run by `ray job submit` (batch inference over a JSONL file)."""
