"""Which sender delivers each channel: decided by settings alone, never by code changes.

With no provider credentials every channel goes to the local outbox, so ``omnicart dev`` works
offline; setting a provider's key moves just that channel to the provider. Provider modules are
imported only when configured, so a missing optional credential never costs an import.
"""

from __future__ import annotations

from omnicart.channels.base import ChannelSender
from omnicart.channels.outbox import OutboxSender
from omnicart.events import CHANNELS, Channel
from omnicart.settings import Settings


def provider_timeout(settings: Settings, preferred: float) -> float:
    """A provider call's HTTP timeout: the sender's own, but never more than half a send attempt.

    A retry starts when an attempt's start-to-close timeout passes; a provider call still waiting
    then would race it, so each call must give up well inside the attempt.
    """
    return min(preferred, settings.send_timeout_seconds / 2)


def build_senders(settings: Settings) -> dict[Channel, ChannelSender]:
    """One sender per channel: the configured provider, else the outbox."""
    outbox = OutboxSender(settings.outbox())
    senders: dict[Channel, ChannelSender] = {channel: outbox for channel in CHANNELS}
    if settings.sendgrid_api_key is not None:
        from omnicart.channels.sendgrid_email import SendGridEmailSender

        senders["email"] = SendGridEmailSender(settings, timeout=provider_timeout(settings, 20.0))
    if settings.twilio_account_sid:
        from omnicart.channels.twilio_sms import TwilioSmsSender

        senders["sms"] = TwilioSmsSender(settings, timeout=provider_timeout(settings, 10.0))
    if settings.twilio_account_sid and settings.twilio_whatsapp_from:
        from omnicart.channels.twilio_whatsapp import TwilioWhatsAppSender

        senders["whatsapp"] = TwilioWhatsAppSender(settings, timeout=provider_timeout(settings, 10.0))
    if settings.fcm_project_id:
        from omnicart.channels.fcm import FcmPushSender

        senders["push"] = FcmPushSender(settings, timeout=provider_timeout(settings, 10.0))
    return senders
