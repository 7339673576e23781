"""Redaction of personal identifiers before text reaches a report or an artifact.

Reports log features, not raw text: when redaction is on, e-mail addresses, IBANs, payment-card
numbers (Luhn-checked), IP addresses and phone numbers are replaced by a tag such as `[email]`.
Patterns are deliberately broad for phones (any run of 9+ digits with separators) — a false
positive costs a number in a report, a false negative leaks one.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b")
_CARD = re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?![\w.])")
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w.])")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().\-/]{7,}\d(?![\w])")

TAGS = ("[email]", "[iban]", "[card]", "[ip]", "[phone]")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else m.group(0)


def _phone(m: re.Match[str]) -> str:
    s = m.group(0)
    digits = re.sub(r"\D", "", s)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):  # an ISO date, not a phone number
        return s
    return "[phone]" if 9 <= len(digits) <= 15 or (s.startswith("+") and len(digits) >= 7) else s


def _ipv6(m: re.Match[str]) -> str:
    s = m.group(0)
    looks_v6 = ("::" in s or re.search(r"[0-9A-Fa-f]{3}", s)) and sum(c.isalnum() for c in s) >= 4 and any(c.isdigit() for c in s)
    return "[ip]" if looks_v6 else s  # "10:30:15" is a time


def redact(text: str) -> str:
    """Replace e-mail addresses, IBANs, card numbers, IPs and phone numbers in `text`."""
    if not text:
        return text
    text = _EMAIL.sub("[email]", text)
    text = _IBAN.sub("[iban]", text)
    text = _CARD.sub(_card, text)
    text = _IPV4.sub("[ip]", text)
    text = _IPV6.sub(_ipv6, text)
    return _PHONE.sub(_phone, text)


class Redactor:
    """Applies `redact` when enabled; the one gate every report text passes through."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str | None) -> str:
        if text is None:
            return ""
        s = str(text)
        return redact(s) if self.enabled else s
