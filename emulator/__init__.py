"""Local SendGrid and Twilio HTTP emulator: see emulator.server."""

from emulator.server import ProviderEmulator, RecordedMessage

__all__ = ["ProviderEmulator", "RecordedMessage"]
