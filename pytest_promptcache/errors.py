"""The error every bad option value becomes: kept apart so that every module parsing options can raise it
without importing the settings."""


class SettingsError(ValueError):
    """A bad option value; the message says which option and what would be accepted."""
