"""Where Redis is and how to reach it safely: URL from flag or environment, TLS, redaction.

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
# TLS material for rediss:// URLs; the environment is only the source of these settings.
ENV_CA = "BENCHCTL_REDIS_CA"
ENV_CERT = "BENCHCTL_REDIS_CERT"
ENV_KEY = "BENCHCTL_REDIS_KEY"


def redact(text: str) -> str:
    """Replace the password of every redis URL in ``text`` with '***' (up to the last '@' of the
    host part, so an unencoded '@' in a password shows nothing of it)."""
    return re.sub(r"(rediss?://[^:/@\s]*:)[^\s/]*@", r"\1***@", str(text))


@dataclass(frozen=True)
class BrokerConfig:
    url: str
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def resolve(cls, url: str | None = None) -> BrokerConfig:
        url = url or os.environ.get(ENV_URL) or DEFAULT_BROKER_URL
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise BrokerError(f"broker URL {redact(url)!r} is not a redis:// or rediss:// URL")
        if parts.netloc.count("@") > 1:
            raise BrokerError(f"broker URL {redact(url)!r} has an '@' in its credentials: percent-encode it as %40")
        try:
            _ = parts.port  # urlsplit checks the port only when it is read
        except ValueError:
            raise BrokerError(f"broker URL {redact(url)!r} has a malformed port") from None
        if parts.path.strip("/") and not parts.path.strip("/").isdigit():
            raise BrokerError(f"broker URL {redact(url)!r} names database {parts.path.strip('/')!r}: "
                              "a Redis database is a number, e.g. /0")
        cfg = cls(url, os.environ.get(ENV_CA) or None, os.environ.get(ENV_CERT) or None, os.environ.get(ENV_KEY) or None)
        for path in (cfg.ca_certs, cfg.certfile, cfg.keyfile):
            if path and not os.path.isfile(path):
                raise BrokerError(f"TLS file {path} does not exist")
        return cfg

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    @property
    def safe_url(self) -> str:
        return redact(self.url)

    def host_label(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port or 6379}", parts.path, "", ""))

    def ssl_options(self) -> dict | None:
        """The same TLS settings for redis-py, Celery's broker and its result backend."""
        if not self.tls:
            return None
        opts = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if self.ca_certs:
            opts["ssl_ca_certs"] = self.ca_certs
        if self.certfile:
            opts["ssl_certfile"] = self.certfile
        if self.keyfile:
            opts["ssl_keyfile"] = self.keyfile
        return opts

    def redis(self, timeout: float = 5.0, retries: int = 3):
        """A redis-py client that retries briefly on a dropped connection and never waits forever."""
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
        return redis.Redis.from_url(self.url, **kwargs)


def ping(cfg: BrokerConfig, timeout: float = 4.0):
    """Connect and PING once, turning every failure into one line that names the redacted URL.

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
    return cfg.redis(max(timeout, 5.0))
