"""RQ jobs of sla-guard and the worker entry point (``sla-guard worker``)."""
