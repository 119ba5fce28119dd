"""Sending at the pace providers allow: one task queue per paced channel, rate-limited by Temporal.

An SMS long code takes about one message a second, a toll-free number or a registered campaign a
few more, SendGrid and FCM their own quotas, WhatsApp a sender's tier. A burst of due reminders
(a thousand carts abandoned during a sale) must drain at that pace instead of producing a storm of
429s, whichever of many workers happens to run the sends.

**Why a task queue per channel, limited by the server.** Each paced channel's sends are scheduled
on their own task queue (:func:`send_queue`), and the workers that poll it set
``max_task_queue_activities_per_second``: the Temporal *server* then hands out at most that many
activity tasks per second for the queue, counted across every worker polling it. That is exactly
"per sender, across all workers", with nothing of ours to keep consistent: no shared counter in a
database that every send would have to lock, no clock skew between workers, no tokens lost when a
worker dies holding them. Sends wait in the queue (durably, visible in the Temporal UI as
scheduled activities), not in a worker slot, so a burst never holds workers hostage and a retry
after a 429 is itself paced. A shared token bucket would also work, but it needs a store every
worker reaches (another failure mode), and a worker waiting for a token holds an activity slot
and races its own start-to-close timeout.

The limit applies to activity *starts*: a retried attempt counts again, which is what a provider
counts too. Every worker that polls a paced queue must set the same rate (the server keeps the
value set by the last poller), which ``worker.py`` does from ``OMNICART_SEND_RATES``; workers and
the ingest API must share that setting (the API names the queues in each signal it sends).
"""

from __future__ import annotations

from omnicart.settings import Settings


def send_queue(task_queue: str, channel: str) -> str:
    """The task queue of one paced channel's sends, next to the workflows' own queue."""
    return f"{task_queue}-send-{channel}"


def send_queues(settings: Settings) -> dict[str, str]:
    """Each paced channel's task queue; a channel not listed is sent from the workflows' queue."""
    return {channel: send_queue(settings.task_queue, channel) for channel in sorted(settings.send_rates)}
