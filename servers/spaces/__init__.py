"""Spaces bridge: the audio of a space → offline transcription → segments on the bus → a transcript container."""
