"""The one exception type the CLI turns into a clean error message."""


class RambootError(Exception):
    """A user-facing failure: the message names the file, line or field at fault."""
