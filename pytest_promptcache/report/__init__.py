"""The session report: its model (the JSON file) and its renderings (terminal, Markdown)."""
