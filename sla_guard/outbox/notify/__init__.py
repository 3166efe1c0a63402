"""Alerts: what they say (messages), where they go (channels), and how delivery is recorded."""
