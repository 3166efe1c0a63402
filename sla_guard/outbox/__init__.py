"""The outbox: everything sla-guard sends (alerts, digests, CRM tasks, look-ups, reassignments)."""
