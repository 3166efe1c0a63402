"""Ingest: CRM webhooks in, verified and bounded, committed, and applied to the leads they touch."""
