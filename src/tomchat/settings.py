"""Configuration from ``TOMCHAT_*`` environment variables; a ``.env`` file in the working folder
is honoured."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from tomchat.domain.errors import ConfigError
from tomchat.domain.limits import LiveLimits, Rate
from tomchat.store.recorders.base import SessionSettings

__all__ = ["ConfigError", "Settings"]


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _seconds(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0.5 <= value <= 600:
        raise ConfigError(f"{name} must be between 0.5 and 600 seconds, got {raw!r}")
    return value


def _rate(env: dict[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not 0 < value <= 1_000_000:
        raise ConfigError(f"{name} must be above 0 and at most 1000000, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./data/tomchat.db"
    redis_url: str | None = None
    redis_prefix: str = "tomchat"  # Redis keys and channels; deployments sharing a Redis differ
    reply_lease_seconds: float = 10.0  # how soon a dead process's reply is taken over
    # PostgreSQL writing sessions: the longest wait for a lock, and the longest idle time
    # inside a transaction before the server ends the session and frees its row locks (a
    # process frozen mid-transaction); None: half the reply lease, so a frozen holder's
    # locks are gone before its lease runs out.
    db_lock_timeout_seconds: float = 2.0
    db_idle_in_transaction_seconds: float | None = None
    # SQLite's commit durability: "full" syncs every commit to disk; "normal" only at
    # checkpoints (faster; a power loss or OS crash may lose the last commits).
    sqlite_sync: str = "full"
    # Reading a request (``http.slow_clients``): its whole head, and each piece of its body.
    http_head_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    host: str = "127.0.0.1"
    port: int = 8000
    media_dir: Path = Path("./data/media")
    llm: str = "demo"
    llm_base_url: str | None = None
    llm_api_key: str | None = field(default=None, repr=False)
    llm_model: str | None = None
    llm_max_tokens: int = 800  # sent as the reply's bound (max_tokens)
    llm_context_tokens: int = 8192  # what a request may hold: prompt, memory, newest turns
    tts: str = "none"
    asr: str = "none"
    fish_api_key: str | None = field(default=None, repr=False)
    fish_base_url: str = "https://api.fish.audio"
    fish_voice: str | None = None
    fish_model: str = "s2-pro"
    fish_latency: str = "balanced"  # Fish's live TTS latency mode: normal | balanced
    demo_delay_ms: int = 40
    character: Path | None = None
    static_dir: Path | None = None
    log_format: str = "text"  # or "json": one object per line
    # Single sign-on: a proxy at one of these networks names the user in this header.
    trusted_user_header: str | None = None
    trusted_proxies: tuple[str, ...] = ()
    # Rate limits and buffers of the live edge; code and tests tune them, not the environment.
    live_limits: LiveLimits = field(default_factory=LiveLimits)

    @property
    def session_settings(self) -> SessionSettings:
        idle = self.db_idle_in_transaction_seconds
        return SessionSettings(
            lock_seconds=self.db_lock_timeout_seconds,
            idle_in_transaction_seconds=idle if idle else max(0.5, self.reply_lease_seconds / 2),
            sqlite_synchronous="NORMAL" if self.sqlite_sync == "normal" else "FULL",
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        if environ is None:
            load_dotenv(Path.cwd() / ".env", override=False)
            environ = dict(os.environ)
        env = environ

        def opt(name: str) -> str | None:
            value = env.get(name)
            return value if value else None

        settings = cls(
            database_url=opt("TOMCHAT_DATABASE_URL") or cls.database_url,
            redis_url=opt("TOMCHAT_REDIS_URL"),
            redis_prefix=opt("TOMCHAT_REDIS_PREFIX") or cls.redis_prefix,
            reply_lease_seconds=_seconds(
                env, "TOMCHAT_REPLY_LEASE_SECONDS", cls.reply_lease_seconds
            ),
            db_lock_timeout_seconds=_seconds(
                env, "TOMCHAT_DB_LOCK_TIMEOUT", cls.db_lock_timeout_seconds
            ),
            db_idle_in_transaction_seconds=(
                _seconds(env, "TOMCHAT_DB_IDLE_IN_TRANSACTION_TIMEOUT", 1.0)
                if opt("TOMCHAT_DB_IDLE_IN_TRANSACTION_TIMEOUT")
                else None
            ),
            sqlite_sync=(opt("TOMCHAT_SQLITE_SYNC") or cls.sqlite_sync).lower(),
            http_head_timeout_seconds=_seconds(
                env, "TOMCHAT_HTTP_HEAD_TIMEOUT", cls.http_head_timeout_seconds
            ),
            http_body_timeout_seconds=_seconds(
                env, "TOMCHAT_HTTP_BODY_TIMEOUT", cls.http_body_timeout_seconds
            ),
            host=opt("TOMCHAT_HOST") or cls.host,
            port=_int(env, "TOMCHAT_PORT", cls.port),
            media_dir=Path(opt("TOMCHAT_MEDIA_DIR") or cls.media_dir),
            llm=(opt("TOMCHAT_LLM") or cls.llm).lower(),
            llm_base_url=opt("TOMCHAT_LLM_BASE_URL"),
            llm_api_key=opt("TOMCHAT_LLM_API_KEY"),
            llm_model=opt("TOMCHAT_LLM_MODEL"),
            llm_max_tokens=_int(env, "TOMCHAT_LLM_MAX_TOKENS", cls.llm_max_tokens),
            llm_context_tokens=_int(env, "TOMCHAT_LLM_CONTEXT_TOKENS", cls.llm_context_tokens),
            tts=(opt("TOMCHAT_TTS") or cls.tts).lower(),
            asr=(opt("TOMCHAT_ASR") or cls.asr).lower(),
            fish_api_key=opt("FISH_API_KEY"),
            fish_base_url=opt("TOMCHAT_FISH_BASE_URL") or cls.fish_base_url,
            fish_voice=opt("TOMCHAT_FISH_VOICE"),
            fish_model=opt("TOMCHAT_FISH_MODEL") or cls.fish_model,
            fish_latency=(opt("TOMCHAT_FISH_LATENCY") or cls.fish_latency).lower(),
            demo_delay_ms=_int(env, "TOMCHAT_DEMO_DELAY_MS", cls.demo_delay_ms),
            character=Path(c) if (c := opt("TOMCHAT_CHARACTER")) else None,
            static_dir=Path(s) if (s := opt("TOMCHAT_STATIC_DIR")) else None,
            log_format=(opt("TOMCHAT_LOG_FORMAT") or cls.log_format).lower(),
            trusted_user_header=opt("TOMCHAT_TRUSTED_USER_HEADER"),
            trusted_proxies=tuple((opt("TOMCHAT_TRUSTED_PROXIES") or "").replace(",", " ").split()),
        )
        rooms_per_minute = _rate(env, "TOMCHAT_NEW_ROOMS_PER_MINUTE")
        if rooms_per_minute is not None:
            # A burst of twice the minute's worth: a class opening rooms at once fits.
            rooms = Rate(burst=max(1.0, 2 * rooms_per_minute), per_second=rooms_per_minute / 60)
            settings = replace(settings, live_limits=replace(settings.live_limits, rooms=rooms))
        known = {f.name for f in fields(cls)}
        bad = set(overrides) - known
        if bad:
            raise TypeError(f"unknown settings: {sorted(bad)}")
        settings = replace(settings, **overrides)
        if settings.sqlite_sync not in ("full", "normal"):
            raise ConfigError(
                f"TOMCHAT_SQLITE_SYNC must be full or normal, got {settings.sqlite_sync!r}"
            )
        if settings.log_format not in ("text", "json"):
            raise ConfigError(
                f"TOMCHAT_LOG_FORMAT must be text or json, got {settings.log_format!r}"
            )
        if not 0 <= settings.port <= 65535:
            raise ConfigError(f"TOMCHAT_PORT must be between 0 and 65535, got {settings.port}")
        if not 1 <= settings.llm_max_tokens <= 1_000_000:
            raise ConfigError(
                f"TOMCHAT_LLM_MAX_TOKENS must be between 1 and 1000000, got {settings.llm_max_tokens}"
            )
        if not 512 <= settings.llm_context_tokens <= 10_000_000:
            raise ConfigError(
                "TOMCHAT_LLM_CONTEXT_TOKENS must be between 512 and 10000000, "
                f"got {settings.llm_context_tokens}"
            )
        if settings.fish_latency not in ("normal", "balanced"):
            raise ConfigError(
                f"TOMCHAT_FISH_LATENCY must be normal or balanced, got {settings.fish_latency!r}"
            )
        _check_trusted(settings)
        return settings


def _check_trusted(settings: Settings) -> None:
    for network in settings.trusted_proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"TOMCHAT_TRUSTED_PROXIES must list addresses or CIDR networks, got {network!r}"
            ) from None
    if settings.trusted_user_header and not settings.trusted_proxies:
        # Honoured from anywhere, the header would let anyone be anyone.
        raise ConfigError("TOMCHAT_TRUSTED_USER_HEADER needs TOMCHAT_TRUSTED_PROXIES")
