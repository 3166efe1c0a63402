"""E-mail over SMTP: STARTTLS (default), implicit TLS (``ssl``) or, on a trusted network, none.

Standard library only (``smtplib``): one connection per message. SMTP reply codes decide the
retry: 4xx and dropped or timed-out connections are retried; 5xx, refused credentials, a
server without STARTTLS (the password is never sent in clear) and an untrusted certificate
fail for good.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sla_guard.core.rules.notify_spec import EmailChannel
from sla_guard.exceptions import DeliveryError
from sla_guard.outbox.http import short
from sla_guard.outbox.notify.formats import email_html, email_subject
from sla_guard.outbox.notify.messages import message_of, plain_text


def build_message(channel: EmailChannel, payload: dict, recipients: list[str]) -> EmailMessage:
    """The message: text and HTML parts, a one-line subject (no CR/LF from a lead's name can
    break the header), a stable Message-ID per alert so a mail system can drop a repeat."""
    parts = message_of(payload)
    message = EmailMessage()
    message["Subject"] = email_subject(parts)
    message["From"] = channel.sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    domain = channel.sender.rpartition("@")[2] or "sla-guard.local"
    if payload.get("alert_id") is not None:
        message["Message-ID"] = f"<sla-guard.alert.{payload['alert_id']}@{domain}>"
    elif payload.get("digest_id") is not None:
        message["Message-ID"] = f"<sla-guard.digest.{payload['digest_id']}@{domain}>"
    else:
        message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(plain_text(parts) if payload.get("message") else payload["text"])
    message.add_alternative(email_html(parts), subtype="html")
    return message


def _tls_context(channel: EmailChannel) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=channel.ca_file) if channel.ca_file else ssl.create_default_context()


def _classify(code: int | None, what: str) -> DeliveryError:
    transient = code is None or 400 <= code < 500
    return DeliveryError(f"email: {what}", transient=transient)


def _reply(code: int, text: bytes | str) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{code} {short(text, 120)}"


def send_email(channel: EmailChannel, payload: dict, address: str | None = None) -> None:
    """Mail the alert to the channel's ``to``, or to the recipient's ``address``."""
    recipients = list(channel.to) or ([address] if address else [])
    if not recipients:
        raise DeliveryError("email: no address for this recipient", transient=False)
    message = build_message(channel, payload, recipients)
    port = channel.effective_port
    try:
        if channel.security == "ssl":
            client = smtplib.SMTP_SSL(channel.host, port, timeout=channel.timeout_s, context=_tls_context(channel))
        else:
            client = smtplib.SMTP(channel.host, port, timeout=channel.timeout_s)
        with client:
            client.ehlo()
            if channel.security == "starttls":
                client.starttls(context=_tls_context(channel))
                client.ehlo()
            if channel.user:
                client.login(channel.user, channel.password or "")
            refused = client.send_message(message, from_addr=channel.sender, to_addrs=recipients)
        if refused:
            codes = [code for code, _ in refused.values()]
            raise _classify(max(codes), f"some recipients refused: {', '.join(map(str, sorted(set(codes))))}")
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(
            f"email: login refused ({_reply(exc.smtp_code, exc.smtp_error)})", transient=False
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"email: the server does not support {short(str(exc), 80)}", transient=False) from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise _classify(
            max(codes) if codes else None, f"recipients refused ({', '.join(map(str, sorted(set(codes))))})"
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise _classify(exc.smtp_code, f"server answered {_reply(exc.smtp_code, exc.smtp_error)}") from None
    except smtplib.SMTPServerDisconnected:
        raise DeliveryError("email: the server closed the connection", transient=True) from None
    except ssl.SSLCertVerificationError:
        raise DeliveryError("email: the server's certificate is not trusted (see ca_file)", transient=False) from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"email: TLS failed ({exc.reason or type(exc).__name__})", transient=False) from None
    except TimeoutError:
        raise DeliveryError("email: timed out", transient=True) from None
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"email: {type(exc).__name__}", transient=True) from None
    except OSError as exc:
        raise DeliveryError(f"email: cannot connect ({type(exc).__name__})", transient=True) from None
