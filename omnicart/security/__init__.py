"""Keeping customers' personal data out of Temporal's sight: encryption, data keys, pseudonyms."""
