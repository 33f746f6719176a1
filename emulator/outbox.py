"""The outbox page: what the emulator received, as the customer would see it."""

from __future__ import annotations

from html import escape

from definition.sms_text import sms_encoding
from emulator.records import RecordedMessage


def outbox_page(messages: list[RecordedMessage]) -> str:
    """What the emulator received, as the customer would see it: newest first."""
    cards = []
    for message in reversed(messages):
        when = message.received_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        if message.channel == "email":
            body = (
                f"<b>{escape(message.subject or '')}</b><br>"
                f'<iframe sandbox="" style="width:100%;height:420px;border:1px solid #ddd" '
                f'srcdoc="{escape(message.html or "", quote=True)}"></iframe>'
                f"<details><summary>plain text</summary><pre>{escape(message.text or '')}</pre></details>"
            )
        else:
            encoding, segments = sms_encoding(message.body or "")
            body = f"<pre>{escape(message.body or '')}</pre><small>{encoding}, {segments} segment(s)</small>"
        cards.append(
            f'<section class="message {message.channel}"><p>{when} · {message.channel} to '
            f"{escape(message.to)} · id {escape(message.provider_id)}</p>{body}</section>"
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>cyklo outbox</title>'
        "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:900px}"
        "section{border-bottom:1px solid #ccc;padding:12px 0}</style></head><body>"
        f"<h1>Outbox — {len(messages)} message(s)</h1>{''.join(cards) or '<p>Nothing sent yet.</p>'}</body></html>"
    )
