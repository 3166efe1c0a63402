"""The dashboard's words in English and Russian, and numbers, money, durations and dates
formatted for the reader's locale (Babel)."""

from __future__ import annotations

from datetime import datetime, timedelta

from babel.dates import format_datetime, format_timedelta
from babel.numbers import format_decimal, format_percent
from flask import g

LOCALES = ("en", "ru")

TEXTS = {
    "en": {
        "title": "sla-guard",
        "now": "Now",
        "sla": "SLA",
        "speed": "Speed",
        "funnel": "Funnel",
        "losses": "Losses",
        "marketing": "Marketing",
        "sign_in": "Sign in",
        "sign_out": "Sign out",
        "name": "Name",
        "password": "Password",
        "wrong": "Wrong name or password.",
        "locked": "Too many failed sign-ins: try again in a few minutes.",
        "disabled": "The dashboard needs SLA_GUARD_SECRET_KEY (or SLA_GUARD_API_TOKEN) to be set.",
        "from": "From",
        "to": "To",
        "team": "Team",
        "source": "Source",
        "owner": "Owner",
        "pipeline": "Pipeline",
        "by": "Group by",
        "apply": "Apply",
        "csv": "Download CSV",
        "total": "Total",
        "none": "(none)",
        "no_rows": "No leads in this period.",
        "overdue": "Overdue",
        "at_risk": "At risk",
        "late_by": "late by {0}",
        "left": "{0} left",
        "open_crm": "Open in CRM",
        "acknowledge": "Acknowledge",
        "acknowledged": "acknowledged",
        "nothing_late": "Nothing is overdue or at risk. Well done.",
        "refreshes": "Refreshes by itself every {0} seconds.",
        "transitions": "Stage moves",
        "backward_moves": "Backward moves",
        "skipped_stages": "Skipped stages",
        "bulk_moves": "Stages filled in after the fact",
        "spend_upload": "Upload spend (CSV: month,source,amount)",
        "upload": "Upload",
        "spend_saved": "{0} spend rows stored.",
        "lead": "Lead",
        "clock": "Clock",
        "due": "Due",
        "signed_in_as": "Signed in as {0} ({1})",
    },
    "ru": {
        "title": "sla-guard",
        "now": "Сейчас",
        "sla": "SLA",
        "speed": "Скорость",
        "funnel": "Воронка",
        "losses": "Потери",
        "marketing": "Маркетинг",
        "sign_in": "Войти",
        "sign_out": "Выйти",
        "name": "Имя",
        "password": "Пароль",
        "wrong": "Неверное имя или пароль.",
        "locked": "Слишком много неудачных попыток: попробуйте через несколько минут.",
        "disabled": "Для панели нужен SLA_GUARD_SECRET_KEY (или SLA_GUARD_API_TOKEN).",
        "from": "С",
        "to": "По",
        "team": "Команда",
        "source": "Источник",
        "owner": "Менеджер",
        "pipeline": "Воронка",
        "by": "Группировать по",
        "apply": "Показать",
        "csv": "Скачать CSV",
        "total": "Итого",
        "none": "(нет)",
        "no_rows": "За этот период лидов нет.",
        "overdue": "Просрочены",
        "at_risk": "Под угрозой",
        "late_by": "опоздание {0}",
        "left": "осталось {0}",
        "open_crm": "Открыть в CRM",
        "acknowledge": "Принято",
        "acknowledged": "принято",
        "nothing_late": "Просроченных и горящих лидов нет.",
        "refreshes": "Страница обновляется сама каждые {0} с.",
        "transitions": "Переходы между этапами",
        "backward_moves": "Возвраты назад",
        "skipped_stages": "Пропущенные этапы",
        "bulk_moves": "Этапы, проставленные задним числом",
        "spend_upload": "Загрузить расходы (CSV: month,source,amount)",
        "upload": "Загрузить",
        "spend_saved": "Сохранено строк расходов: {0}.",
        "lead": "Лид",
        "clock": "Часы",
        "due": "Срок",
        "signed_in_as": "Вы вошли как {0} ({1})",
    },
}

COLUMNS = {
    "en": {
        "leads": "Leads",
        "met": "Met",
        "missed": "Missed",
        "overdue": "Overdue",
        "running": "Running",
        "paused": "Paused",
        "cancelled": "Cancelled",
        "compliance": "Compliance",
        "first_touch_p50_s": "First touch, median",
        "first_touch_p90_s": "First touch, p90",
        "bucket": "First touch within",
        "won": "Won",
        "lost": "Lost",
        "open": "Open",
        "conversion": "Conversion",
        "revenue": "Revenue",
        "stage": "Stage",
        "entered": "Entered",
        "advanced": "Advanced",
        "lost_here": "Lost here",
        "time_in_stage_p50_s": "Time in stage, median",
        "time_in_stage_p90_s": "Time in stage, p90",
        "reason": "Reason",
        "share": "Share",
        "amount": "Amount",
        "after_sla_breach": "After an SLA breach",
        "month": "Month",
        "spend": "Spend",
        "cpl": "CPL",
        "cac": "CAC",
        "roi": "ROI",
        "ltv": "LTV",
        "ltv_cac": "LTV/CAC",
        "owner": "Owner",
        "source": "Source",
        "team": "Team",
        "rule": "Rule",
        "week": "Week",
        "from": "From",
        "to": "To",
        "count": "Moves",
    },
    "ru": {
        "leads": "Лиды",
        "met": "В срок",
        "missed": "С опозданием",
        "overdue": "Просрочены",
        "running": "Идут",
        "paused": "На паузе",
        "cancelled": "Отменены",
        "compliance": "Соблюдение SLA",
        "first_touch_p50_s": "Первое касание, медиана",
        "first_touch_p90_s": "Первое касание, p90",
        "bucket": "Первое касание за",
        "won": "Выиграны",
        "lost": "Проиграны",
        "open": "В работе",
        "conversion": "Конверсия",
        "revenue": "Выручка",
        "stage": "Этап",
        "entered": "Вошли",
        "advanced": "Прошли дальше",
        "lost_here": "Потеряны здесь",
        "time_in_stage_p50_s": "Время на этапе, медиана",
        "time_in_stage_p90_s": "Время на этапе, p90",
        "reason": "Причина",
        "share": "Доля",
        "amount": "Сумма",
        "after_sla_breach": "После нарушения SLA",
        "month": "Месяц",
        "spend": "Расходы",
        "cpl": "CPL",
        "cac": "CAC",
        "roi": "ROI",
        "ltv": "LTV",
        "ltv_cac": "LTV/CAC",
        "owner": "Менеджер",
        "source": "Источник",
        "team": "Команда",
        "rule": "Правило",
        "week": "Неделя",
        "from": "Откуда",
        "to": "Куда",
        "count": "Переходов",
    },
}

RATIOS = {"compliance", "conversion", "share", "roi"}
SECONDS = {"first_touch_p50_s", "first_touch_p90_s", "time_in_stage_p50_s", "time_in_stage_p90_s"}
MONEY = {"revenue", "amount", "spend", "cpl", "cac", "ltv"}


def locale() -> str:
    user = g.get("user")
    return user.locale if user is not None and user.locale in LOCALES else "en"


def text(key: str, *args) -> str:
    value = TEXTS[locale()].get(key, key)
    return value.format(*args) if args else value


def column(key: str) -> str:
    return COLUMNS[locale()].get(key, key)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return format_timedelta(timedelta(seconds=seconds), threshold=1.5, format="short", locale=locale())


def cell(key: str, value) -> str:
    """A report value as the reader expects it: 87 %, 1 250,5, 15 min, or — for none."""
    if value is None:
        return "—"
    if key in RATIOS:
        return format_percent(value, format="#,##0.#%", locale=locale())
    if key in SECONDS:
        return duration(value)
    if key in MONEY:
        return format_decimal(value, format="#,##0.##", locale=locale())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_decimal(value, locale=locale())
    return str(value)


def when(value: datetime | None, zone: str) -> str:
    return format_datetime(value, format="short", tzinfo=zone, locale=locale()) if value else "—"


def init_app(app) -> None:
    app.jinja_env.globals.update(t=text, col=column, cell=cell, duration=duration, when=when)
