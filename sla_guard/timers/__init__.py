"""Timers: deadlines armed in Redis, fired when due, escalations decided, and the reconciler."""
