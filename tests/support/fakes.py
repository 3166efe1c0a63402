"""Local stand-ins for the services alerts go to, checking requests the way the real APIs do.

- :class:`FakeTelegram`: the Bot API's ``/bot<token>/sendMessage``, ``editMessageText`` and
  ``answerCallbackQuery``, JSON or form bodies, Telegram's error bodies (401 bad token, 400 chat
  not found or message not found, 429 with ``retry_after``).
- :class:`FakeSlack`: an incoming webhook, ``chat.postMessage`` and a ``response_url``.
- :class:`SmtpSink`: an in-process SMTP server (aiosmtpd) with STARTTLS or implicit TLS and
  AUTH, keeping every message it receives.
- :func:`silent_server`: a port that accepts connections and never answers (timeouts).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

from werkzeug.wrappers import Request, Response

from sla_guard.redis_server import free_port

TELEGRAM_TOKEN = "123456:AAH-test-bot-token-secret"
SLACK_BOT_TOKEN = "xoxb-test-slack-bot-token"


def _json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json", headers=headers or {})


@dataclass
class FakeTelegram:
    """The Bot API: known chats, a valid token, and a script of failures to answer first."""

    chats: set = field(default_factory=lambda: {"1001", "-100123", "@sales"})
    token: str = TELEGRAM_TOKEN
    failures: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    broken: dict = field(default_factory=dict)
    """chat id -> (status, body) answered for every message to that chat."""
    edits: list = field(default_factory=list)
    answers: list = field(default_factory=list)

    def install(self, httpserver) -> FakeTelegram:
        httpserver.expect_request(re.compile(r"^/bot[^/]+/sendMessage$"), method="POST").respond_with_handler(
            self.handle
        )
        httpserver.expect_request(re.compile(r"^/bot[^/]+/editMessageText$"), method="POST").respond_with_handler(
            self.edit
        )
        httpserver.expect_request(re.compile(r"^/bot[^/]+/answerCallbackQuery$"), method="POST").respond_with_handler(
            self.answer
        )
        return self

    def _authorized(self, request: Request) -> bool:
        return request.path.split("/")[1][len("bot") :] == self.token

    def edit(self, request: Request) -> Response:
        """``editMessageText``: the message must exist in that chat; the text must be valid for its parse mode."""
        if not self._authorized(request):
            return _json({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        body = request.get_json(silent=True) or {}
        sent = [
            index
            for index, message in enumerate(self.messages, start=1)
            if str(message["chat_id"]) == str(body.get("chat_id"))
        ]
        if body.get("message_id") not in sent:
            return _json({"ok": False, "error_code": 400, "description": "Bad Request: message to edit not found"}, 400)
        if not body.get("text"):
            return _json({"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}, 400)
        self.edits.append(body)
        return _json({"ok": True, "result": {"message_id": body["message_id"], "text": body["text"]}})

    def answer(self, request: Request) -> Response:
        if not self._authorized(request):
            return _json({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        body = request.get_json(silent=True) or {}
        if not body.get("callback_query_id"):
            return _json({"ok": False, "error_code": 400, "description": "Bad Request: query is too old"}, 400)
        self.answers.append(body)
        return _json({"ok": True, "result": True})

    def handle(self, request: Request) -> Response:
        token = request.path.split("/")[1][len("bot") :]
        if token != self.token:
            return _json({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
        if request.mimetype == "application/json":
            body = request.get_json()
        elif request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            body = request.form.to_dict()
        else:
            return _json({"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}, 400)
        if not body.get("text"):
            return _json({"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}, 400)
        if self.failures:
            status, reply = self.failures.pop(0)
            return _json(reply, status)
        if str(body.get("chat_id")) in self.broken:
            status, reply = self.broken[str(body.get("chat_id"))]
            return _json(reply, status)
        if str(body.get("chat_id")) not in self.chats:
            return _json({"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, 400)
        self.messages.append(body)
        return _json(
            {
                "ok": True,
                "result": {"message_id": len(self.messages), "chat": {"id": body["chat_id"]}, "text": body["text"]},
            }
        )


def telegram_429(retry_after: int) -> tuple[int, dict]:
    return 429, {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


@dataclass
class FakeSlack:
    """An incoming webhook at ``/services/T000/B000/XXXX`` and the Web API's ``chat.postMessage``."""

    token: str = SLACK_BOT_TOKEN
    channels: set = field(default_factory=lambda: {"C0SALES", "U0ANNA", "#sales"})
    failures: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    responses: list = field(default_factory=list)
    """Bodies posted to the ``response_url`` of an interaction."""

    hook_path = "/services/T000/B000/XXXXSECRETXXXX"
    response_path = "/actions/T000/1234/XXXXRESPONSEXXXX"

    def install(self, httpserver) -> FakeSlack:
        httpserver.expect_request(self.hook_path, method="POST").respond_with_handler(self.hook)
        httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(self.post_message)
        httpserver.expect_request(self.response_path, method="POST").respond_with_handler(self.respond)
        return self

    def respond(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        if not body or not (body.get("text") or body.get("blocks")):
            return _json({"ok": False, "error": "no_text"}, 400)
        self.responses.append(body)
        return _json({"ok": True})

    def hook(self, request: Request) -> Response:
        if self.failures:
            status, text, headers = self.failures.pop(0)
            return Response(text, status=status, headers=headers)
        body = request.get_json(silent=True)
        if not body or not body.get("text"):
            return Response("invalid_payload", status=400)
        self.messages.append(body)
        return Response("ok", status=200)

    def post_message(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json({"ok": False, "error": "invalid_auth"})
        if self.failures:
            status, text, headers = self.failures.pop(0)
            return Response(text, status=status, headers=headers, content_type="application/json")
        body = request.get_json(silent=True) or request.form.to_dict()
        if body.get("channel") not in self.channels:
            return _json({"ok": False, "error": "channel_not_found"})
        if not body.get("text"):
            return _json({"ok": False, "error": "no_text"})
        self.messages.append(body)
        return _json({"ok": True, "channel": body["channel"], "ts": "1.000001"})


class silent_server:
    """A TCP port that accepts connections (the kernel's backlog) and never says a word."""

    def __enter__(self) -> int:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (openssl), as (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 keeping the messages it accepts.

    ``mode`` is ``starttls`` (STARTTLS required before AUTH and MAIL), ``ssl`` (implicit TLS) or
    ``plain``. With ``user``/``password`` set, AUTH is required. ``reject`` makes RCPT answer
    that code.
    """

    def __init__(
        self,
        cert: Path | None,
        key: Path | None,
        mode: str = "starttls",
        user: str | None = None,
        password: str | None = None,
    ):
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list = []
        self.reject: int | None = None
        self.port = free_port()
        context = None
        if cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(cert), str(key))
        sink = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
                if sink.reject:
                    return f"{sink.reject} mailbox unavailable" if sink.reject >= 500 else f"{sink.reject} try later"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                sink.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "message": message_from_bytes(envelope.content, policy=policy.default),
                        "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                        "login": getattr(session, "auth_data", None),
                    }
                )
                return "250 Message accepted"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = user is not None and auth_data.login.decode() == user and auth_data.password.decode() == password
            return AuthResult(success=ok, handled=False)

        options: dict = {"hostname": "127.0.0.1", "port": self.port}
        if user:
            options.update(authenticator=authenticate, auth_required=True, auth_require_tls=mode != "plain")
        if mode == "starttls":
            options.update(tls_context=context, require_starttls=True)
        elif mode == "ssl":
            options.update(ssl_context=context)
        self.controller = Controller(Handler(), **options)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
