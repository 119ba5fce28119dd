"""Consent with provenance: the consent history (``history``) and the preference centre (``preferences``).

The customer's workflow stays the source of truth for whether a message may go; this package keeps
the record of every change (where it came from, when, and its evidence), exports it per customer,
and lets customers choose channels and topics from a signed link. See docs/PRIVACY.md.
"""
