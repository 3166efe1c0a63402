import pytest

from sla_guard.exceptions import Unauthorized
from sla_guard.security import sign, verify_bearer, verify_signature

BODY = b'{"event_id":"e1"}'
SECRET = "s3cret-s3cret-s3cret"


def test_a_fresh_signature_passes():
    verify_signature(sign(SECRET, BODY, 1_000_000), BODY, SECRET, now=1_000_100, max_age_s=300)


def test_known_vector():
    # HMAC-SHA256("s3cret-s3cret-s3cret", "1000000.{body}") computed independently with openssl
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY, 1_000_000) == f"t=1000000,v1={expected}"


@pytest.mark.parametrize(
    "header, now, reason",
    [
        (None, 1_000_000, "missing"),
        ("v1=abc", 1_000_000, "malformed"),
        ("t=abc,v1=abc", 1_000_000, "malformed"),
        ("t=1000000", 1_000_000, "malformed"),
        (sign(SECRET, BODY, 1_000_000), 1_000_301, "too old"),
        (sign(SECRET, BODY, 1_000_000), 999_600, "future"),
        (sign("another-secret-xx", BODY, 1_000_000), 1_000_000, "does not match"),
        (sign(SECRET, BODY + b" ", 1_000_000), 1_000_000, "does not match"),
    ],
)
def test_refusals_say_why(header, now, reason):
    with pytest.raises(Unauthorized, match=reason):
        verify_signature(header, BODY, SECRET, now=now, max_age_s=300)


def test_one_of_several_signatures_may_match_during_secret_rotation():
    old = sign("old-secret-old-secret", BODY, 1_000_000).split(",")[1]
    verify_signature(f"t=1000000,{old},{sign(SECRET, BODY, 1_000_000).split(',')[1]}", BODY, SECRET, 1_000_000, 300)


def test_bearer():
    verify_bearer("Bearer tok-tok-tok-tok-tok", "tok-tok-tok-tok-tok")
    for header in (None, "Bearer nope", "Basic tok-tok-tok-tok-tok", "tok-tok-tok-tok-tok"):
        with pytest.raises(Unauthorized):
            verify_bearer(header, "tok-tok-tok-tok-tok")
    with pytest.raises(Unauthorized, match="disabled"):
        verify_bearer("Bearer x", None)
