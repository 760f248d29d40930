"""Agents: their definitions (Markdown files with YAML front matter, or the admin API)."""
