"""Exceptions that carry the file and key a user has to fix."""


class ConfigError(ValueError):
    """A configuration file is unreadable or invalid. The message names the file and the key."""

    def __init__(self, file, key: str | None, message: str):
        self.file = str(file)
        self.key = key
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {message}")
