"""Unpod's per-agent webhooks as events, at no request cost (off unless ``webhook:`` is set).

``events`` reads a delivery into an event, touching only the fields it needs; ``labels``
caps what payload values may become; ``dedup`` forgets re-sends; ``metrics`` counts;
``secret`` checks the shared-secret header; ``receiver`` answers as the platform needs;
``service`` puts it on a listener of its own; ``trigger`` turns events into polls. The
config section is ``exporter/config/webhook.py``.
"""

from exporter.webhook.service import WebhookService
from exporter.webhook.trigger import PollTrigger

__all__ = ["PollTrigger", "WebhookService"]
