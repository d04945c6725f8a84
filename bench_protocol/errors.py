"""Typed errors. The CLI edge turns each into one clear line and a non-zero exit."""


class BenchError(Exception):
    """Base of every error meant for the user; its message is the one line they read."""

    exit_code = 2


class SpecError(BenchError):
    """A run or cell spec that cannot be measured as given."""


class RecordsError(BenchError):
    """A records file that is missing, not JSON, or of another schema."""


class OutputError(BenchError):
    """An output directory that cannot be written."""


class BrokerError(BenchError):
    """Redis cannot be reached or refuses us. Messages carry redacted URLs only."""

    exit_code = 3


class RunNotFound(BenchError):
    """A run id that is malformed or unknown to the broker."""


class NoLiveWorker(BenchError):
    """A requested device pool has no live worker."""

    exit_code = 4


class CorruptRecord(BenchError):
    """A key of benchctl's in the store that cannot be read (garbage bytes, a missing field)."""


class SendError(BrokerError):
    """Sending cells' tasks failed part way: ``sent`` of ``total`` are certainly on the broker."""

    def __init__(self, message: str, sent: int, total: int) -> None:
        super().__init__(message)
        self.sent, self.total = sent, total
