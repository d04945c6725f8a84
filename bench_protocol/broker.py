"""Where the queue and the records are, and how to reach them safely: URLs from flags or the
environment, TLS, redaction.

Two endpoints: the **broker** carries Celery's task messages (Redis or RabbitMQ); the **store**
holds benchctl's own state — runs, cell states, claims, records, the worker registry — and is
always Redis. With a Redis broker the store is the same server unless told otherwise.

A password never leaves this module unredacted: every message about a URL uses :func:`redact`.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .errors import BrokerError

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
ENV_URL = "BENCHCTL_BROKER_URL"
ENV_STORE_URL = "BENCHCTL_STORE_URL"
# TLS material for rediss:// URLs (broker or store); the environment is only the source of
# these settings.
ENV_CA = "BENCHCTL_REDIS_CA"
ENV_CERT = "BENCHCTL_REDIS_CERT"
ENV_KEY = "BENCHCTL_REDIS_KEY"
# TLS material for amqps:// broker URLs.
ENV_AMQP_CA = "BENCHCTL_AMQP_CA"
ENV_AMQP_CERT = "BENCHCTL_AMQP_CERT"
ENV_AMQP_KEY = "BENCHCTL_AMQP_KEY"

REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "amqps")


def redact(text: str) -> str:
    """Replace the password of every redis or amqp URL in ``text`` with '***' (up to the last
    '@' of the host part, so an unencoded '@' in a password shows nothing of it)."""
    return re.sub(r"((?:rediss?|amqps?)://[^:/@\s]*:)[^\s/]*@", r"\1***@", str(text))


def _check_url(url: str, role: str, schemes: tuple[str, ...]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        names = " or ".join(f"{s}://" for s in schemes)
        raise BrokerError(f"{role} URL {redact(url)!r} is not a {names} URL")
    if parts.netloc.count("@") > 1:
        raise BrokerError(f"{role} URL {redact(url)!r} has an '@' in its credentials: percent-encode it as %40")
    try:
        _ = parts.port  # urlsplit checks the port only when it is read
    except ValueError:
        raise BrokerError(f"{role} URL {redact(url)!r} has a malformed port") from None
    path = parts.path.strip("/")
    if parts.scheme in REDIS_SCHEMES and path and not path.isdigit():
        raise BrokerError(f"{role} URL {redact(url)!r} names database {path!r}: a Redis database is a number, e.g. /0")


def _env_files(*names: str) -> tuple[str | None, ...]:
    paths = tuple(os.environ.get(n) or None for n in names)
    for path in paths:
        if path and not os.path.isfile(path):
            raise BrokerError(f"TLS file {path} does not exist")
    return paths


@dataclass(frozen=True)
class BrokerConfig:
    """The broker (``url``) and the store (``store_url``) of one deployment."""

    url: str
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    store_url: str = ""
    amqp_ca: str | None = None
    amqp_cert: str | None = None
    amqp_key: str | None = None

    @classmethod
    def resolve(cls, url: str | None = None, store: str | None = None) -> BrokerConfig:
        url = url or os.environ.get(ENV_URL) or DEFAULT_BROKER_URL
        _check_url(url, "broker", REDIS_SCHEMES + AMQP_SCHEMES)
        store = store or os.environ.get(ENV_STORE_URL) or None
        if store is None:
            if urlsplit(url).scheme in AMQP_SCHEMES:
                raise BrokerError(f"broker {redact(url)} is RabbitMQ: benchctl keeps its records in Redis, so name one "
                                  f"with --store redis://HOST:6379/0 or ${ENV_STORE_URL}")
            store = url
        _check_url(store, "store", REDIS_SCHEMES)
        ca, cert, key = _env_files(ENV_CA, ENV_CERT, ENV_KEY)
        amqp_ca, amqp_cert, amqp_key = _env_files(ENV_AMQP_CA, ENV_AMQP_CERT, ENV_AMQP_KEY)
        return cls(url, ca, cert, key, store, amqp_ca, amqp_cert, amqp_key)

    @property
    def kind(self) -> str:
        """'redis' or 'rabbitmq': which broker carries the tasks."""
        return "rabbitmq" if urlsplit(self.url).scheme in AMQP_SCHEMES else "redis"

    @property
    def tls(self) -> bool:
        """Whether the store is reached over TLS."""
        return urlsplit(self.store_url).scheme == "rediss"

    @property
    def safe_url(self) -> str:
        """The store, redacted: what messages about benchctl's records name."""
        return redact(self.store_url)

    @property
    def safe_broker_url(self) -> str:
        return redact(self.url)

    def describe(self) -> str:
        """Broker and store, redacted, for a worker's start-up line."""
        if self.store_url == self.url:
            return self.safe_broker_url
        return f"{self.safe_broker_url} (records in {self.safe_url})"

    def host_label(self) -> str:
        parts = urlsplit(self.store_url)
        return urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port or 6379}", parts.path, "", ""))

    @staticmethod
    def _tls(prefix: str, ca: str | None, cert: str | None, key: str | None) -> dict:
        """Verified TLS with optional CA and client certificate, in a library's key names:
        redis-py's ``ssl_``-prefixed ones, py-amqp's bare ones."""
        opts = {f"{prefix}cert_reqs": ssl.CERT_REQUIRED}
        for name, path in (("ca_certs", ca), ("certfile", cert), ("keyfile", key)):
            if path:
                opts[prefix + name] = path
        return opts

    def ssl_options(self) -> dict | None:
        """TLS settings for redis-py and Celery's result backend (both talk to the store)."""
        return self._tls("ssl_", self.ca_certs, self.certfile, self.keyfile) if self.tls else None

    def broker_ssl_options(self) -> dict | None:
        """TLS settings for Celery's broker connection: kombu's Redis or py-amqp's form."""
        scheme = urlsplit(self.url).scheme
        if scheme == "rediss":
            return self._tls("ssl_", self.ca_certs, self.certfile, self.keyfile)
        if scheme == "amqps":
            return self._tls("", self.amqp_ca, self.amqp_cert, self.amqp_key)
        return None

    def redis(self, timeout: float = 5.0, retries: int = 3):
        """A redis-py client for the store that retries briefly on a dropped connection and never
        waits forever."""
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        kwargs = dict(
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), retries),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=15,
            decode_responses=True,
        )
        kwargs.update(self.ssl_options() or {})
        return redis.Redis.from_url(self.store_url, **kwargs)


def store_error(exc: BaseException, where: str) -> str:
    """One line for a failure of the store (Redis) at ``where`` (a redacted URL): what happened
    and, where it is clear, what the operator does."""
    import redis

    msg = redact(exc) or type(exc).__name__
    if isinstance(exc, redis.InvalidResponse):
        return (f"something other than Redis answers at {where} (it replied {msg.removeprefix('Protocol Error: ')}): "
                "check the host and port of the URL")
    if isinstance(exc, redis.AuthenticationError) or (isinstance(exc, redis.ResponseError) and (
            "NOAUTH" in msg or "WRONGPASS" in msg)):
        return f"Redis at {where} refused the credentials: {msg}"
    if isinstance(exc, redis.OutOfMemoryError) or (isinstance(exc, redis.ResponseError) and msg.startswith("OOM")):
        return (f"Redis at {where} refused a write: it is at its memory limit (maxmemory) ({msg}); free memory or "
                "raise maxmemory")
    if isinstance(exc, redis.ReadOnlyError):
        return f"Redis at {where} is a read-only replica ({msg}): point benchctl at the primary"
    if isinstance(exc, redis.BusyLoadingError):
        return f"Redis at {where} is still loading its data set ({msg}); try again in a moment"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return f"lost Redis at {where}: {msg}"
    if isinstance(exc, redis.ResponseError):
        return f"Redis at {where} answered with an error: {msg}"
    return f"Redis at {where} failed: {type(exc).__name__}: {msg}"


def ping(cfg: BrokerConfig, timeout: float = 4.0):
    """Connect to the store and PING once, turning every failure into one line that names the
    redacted URL.

    One attempt bounded by ``timeout``: a server that accepts the connection and never answers
    (a hung Redis, a wrong port behind a proxy) costs seconds, not the retries' minutes. The
    client returned for the work that follows retries as usual."""
    import redis

    try:
        cfg.redis(timeout, retries=0).ping()
    except redis.AuthenticationError as exc:
        raise BrokerError(f"Redis at {cfg.safe_url} refused the credentials: {redact(exc)}") from None
    except redis.ResponseError as exc:
        msg = redact(exc)
        if "NOAUTH" in msg or "WRONGPASS" in msg or "AUTH" in msg:
            raise BrokerError(f"Redis at {cfg.safe_url} refused the credentials: {msg}") from None
        raise BrokerError(f"Redis at {cfg.safe_url} answered with an error: {msg}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BrokerError(f"cannot reach Redis at {cfg.safe_url}: {redact(exc) or type(exc).__name__}") from None
    except redis.RedisError as exc:  # e.g. InvalidResponse: another server answers on that port
        raise BrokerError(store_error(exc, cfg.safe_url)) from None
    return cfg.redis(max(timeout, 5.0))


def ping_broker(cfg: BrokerConfig, timeout: float = 4.0) -> None:
    """Open and close one connection to a RabbitMQ broker within ``timeout`` (a Redis broker is
    the store, already pinged), so that a controller command fails in one line, not in a hang."""
    if cfg.kind != "rabbitmq":
        return
    from urllib.parse import unquote

    import amqp

    ssl_opts = cfg.broker_ssl_options()
    parts = urlsplit(cfg.url)

    conn = amqp.Connection(host=f"{parts.hostname}:{parts.port or (5671 if ssl_opts else 5672)}",
                           userid=unquote(parts.username or "guest"), password=unquote(parts.password or "guest"),
                           virtual_host=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
                           ssl=ssl_opts or False, connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout)
    try:
        conn.connect()
    except amqp.exceptions.AccessRefused as exc:
        raise BrokerError(f"RabbitMQ at {cfg.safe_broker_url} refused the credentials: {redact(exc)}") from None
    except amqp.exceptions.NotAllowed as exc:
        raise BrokerError(f"RabbitMQ at {cfg.safe_broker_url} refused the virtual host: {redact(exc)}") from None
    except (OSError, amqp.exceptions.AMQPError) as exc:  # socket timeouts are OSErrors
        raise BrokerError(f"cannot reach RabbitMQ at {cfg.safe_broker_url}: {redact(exc) or type(exc).__name__}") from None
    finally:
        try:
            conn.collect()
        except Exception:
            pass
