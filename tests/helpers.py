"""The plain functions behind the fixtures of :mod:`tests.support.webhooks`, for the test
modules that still import them instead of taking the fixtures."""

from tests.support.webhooks import make_event as event
from tests.support.webhooks import sign_and_post as post_signed
from tests.support.webhooks import work_until_idle as run_worker

__all__ = ["event", "post_signed", "run_worker"]
