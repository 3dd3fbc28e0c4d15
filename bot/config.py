"""Configuration from the environment and a `.env` file (README.md#configuration lists every
variable; what each gateway needs is in docs/GATEWAYS.md#configuration).

Every variable has a default that runs the bot offline (local provider, SQLite under ./data).
A bad value becomes one `ConfigError` line naming the variable and what it allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError
from bot.media.fetch import NetworkPolicy
from bot.skus import Sku, parse_skus

ProviderName = Literal["local", "anyfast", "runware", "magnific", "hiapi"]
PROVIDER_NAMES: tuple[str, ...] = ("local", "anyfast", "runware", "magnific", "hiapi")

DEFAULT_BASE_URLS = {
    "anyfast": "https://www.anyfast.ai",
    "runware": "https://api.runware.ai",
    "magnific": "https://api.magnific.com",
    "hiapi": "https://api.hiapi.ai",
}

#: Credits per second of video by resolution: 1 credit = 1 s of 480p (docs/GATEWAYS.md#billing).
DEFAULT_PRICES = {"480p": 1, "720p": 2, "1080p": 4}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    discord_token: str | None = None
    seedance_dev_guild_id: int | None = None
    seedance_provider: ProviderName = "local"
    seedance_model: str | None = None
    seedance_data_dir: Path = Path("./data")
    #: Unset: SQLite in SEEDANCE_DATA_DIR. A postgresql:// URL: one database shared by several
    #: processes (shards, workers).
    seedance_database_url: str | None = None
    #: Gateway shards: how many in all, and which of them this process runs (unset: Discord's
    #: recommendation, all in this process).
    seedance_shard_count: int | None = Field(default=None, ge=1)
    seedance_shard_ids: str | None = None
    #: Port of the health check (GET /healthz) and the callback receiver, when set.
    seedance_http_port: int | None = Field(default=None, ge=1, le=65535)
    #: Results and status as components-v2 cards (cogs/utils/layout.py); off: the embeds.
    #: A server's own `cards` setting wins.
    seedance_result_cards: bool = True

    anyfast_api_key: str | None = None
    anyfast_base_url: str = DEFAULT_BASE_URLS["anyfast"]
    runware_api_key: str | None = None
    runware_base_url: str = DEFAULT_BASE_URLS["runware"]
    magnific_api_key: str | None = None
    magnific_base_url: str = DEFAULT_BASE_URLS["magnific"]
    hiapi_api_key: str | None = None
    hiapi_base_url: str = DEFAULT_BASE_URLS["hiapi"]
    hiapi_callback_secret: str | None = None

    seedance_user_daily_credits: int = Field(default=60, ge=0)
    seedance_guild_monthly_credits: int = Field(default=3000, ge=0)
    #: The monthly pool all personal (user-install) jobs share; unset: the same as a server's.
    seedance_personal_monthly_credits: int | None = Field(default=None, ge=0)
    #: Optional price table, e.g. "480p=1,720p=2,1080p=4".
    seedance_prices: str | None = None

    seedance_webhook_base_url: str | None = None
    seedance_webhook_port: int = Field(default=8080, ge=1, le=65535)
    seedance_webhook_secret: str | None = None

    #: Simulated seconds the local provider takes, for demos and benchmarks.
    seedance_local_delay: float = Field(default=0.0, ge=0)
    #: Largest file the bot will download from anywhere, in bytes.
    seedance_max_download_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    #: Extra hosts attachments may be downloaded from, comma-separated (a test CDN, a proxy);
    #: Discord's own CDN hosts are always allowed.
    seedance_cdn_hosts: str = ""
    #: What one server's library (`/library add`, bot/service/library.py) may hold: items, and
    #: their bytes in all (the bytes live in the database).
    seedance_library_max_items: int = Field(default=50, ge=1)
    seedance_library_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    #: Hosts or networks (CIDR) that downloads may reach although private or loopback, over
    #: http or https: a self-hosted proxy, or the tests' loopback fakes. Empty: none may.
    seedance_private_hosts: str = ""
    #: Optional hosts each gateway's results may come from, e.g.
    #: "runware=.runware.ai,hiapi=cdn.hiapi.ai|files.hiapi.ai" (suffix match on labels).
    seedance_result_hosts: str = ""
    #: Days finished files are kept under the data dir.
    seedance_retention_days: int = Field(default=7, ge=0)
    #: Jobs in flight (submitting or generating) at once per gateway account, e.g.
    #: "runware=20,anyfast=8": what the account's plan allows. A gateway not named keeps the
    #: engine's default (bot/engine/caps.py).
    seedance_gateway_concurrency: str = ""
    #: Ordered failover list, e.g. "hiapi,runware,anyfast" (bot/engine/fleet.py): used instead
    #: of SEEDANCE_PROVIDER's single gateway; setting both is refused as ambiguous.
    seedance_providers: str | None = None
    #: Seconds a job waits while every gateway of its list is down, before it fails.
    # Discord store SKUs and the credits each buys (bot/skus.py); empty: no premium.
    seedance_skus: str = ""
    seedance_failover_wait: float = Field(default=600.0, ge=0)

    @field_validator(
        "anyfast_base_url", "runware_base_url", "magnific_base_url", "hiapi_base_url"
    )
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a local test server)")
        return v.rstrip("/")

    @field_validator("seedance_webhook_base_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be the public https:// URL that reaches the callback port")
        return v.rstrip("/") if v else v

    @field_validator("seedance_database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        if not v or not v.strip():
            return None
        scheme = urlsplit(v.strip()).scheme.lower()
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://user:password@host:5432/database URL; "
                             "unset it to keep SQLite in SEEDANCE_DATA_DIR")
        return v.strip()

    @field_validator("seedance_shard_ids")
    @classmethod
    def _shard_ids(cls, v: str | None) -> str | None:
        if v is not None and v.strip():
            parse_shard_ids(v)
            return v
        return None

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        ids = self.shard_ids
        if ids is None:
            return self
        count = self.seedance_shard_count
        if count is None:
            raise ValueError("SEEDANCE_SHARD_IDS needs SEEDANCE_SHARD_COUNT, the number of "
                             "shards in all processes together")
        too_big = [i for i in ids if i >= count]
        if too_big:
            raise ValueError(f"SEEDANCE_SHARD_IDS must each be below SEEDANCE_SHARD_COUNT="
                             f"{count} (shards are numbered from 0), got {too_big[0]}")
        return self

    @field_validator("seedance_private_hosts")
    @classmethod
    def _private_hosts(cls, v: str) -> str:
        NetworkPolicy.parse(v)
        return v

    @field_validator("seedance_result_hosts")
    @classmethod
    def _result_hosts(cls, v: str) -> str:
        parse_result_hosts(v)
        return v

    @field_validator("seedance_gateway_concurrency")
    @classmethod
    def _gateway_concurrency(cls, v: str) -> str:
        parse_gateway_concurrency(v)
        return v

    @field_validator("seedance_providers")
    @classmethod
    def _providers(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parse_providers(v)
        return v

    @model_validator(mode="after")
    def _one_gateway_choice(self) -> Settings:
        if self.seedance_providers and "seedance_provider" in self.model_fields_set:
            raise ValueError("SEEDANCE_PROVIDER and SEEDANCE_PROVIDERS are both set, which is "
                             "ambiguous; keep SEEDANCE_PROVIDERS (the ordered failover list) or "
                             "SEEDANCE_PROVIDER (one gateway), not both")
        return self

    @field_validator("seedance_skus")
    @classmethod
    def _skus(cls, v: str) -> str:
        parse_skus(v)
        return v

    @field_validator("seedance_prices")
    @classmethod
    def _prices(cls, v: str | None) -> str | None:
        if v:
            parse_prices(v)
        return v

    @property
    def data_dir(self) -> Path:
        return self.seedance_data_dir

    @property
    def database_path(self) -> Path:
        return self.seedance_data_dir / "seedance.sqlite3"

    @property
    def database(self) -> str | Path:
        """What the store opens: the PostgreSQL URL, else the SQLite file in the data dir."""
        return self.seedance_database_url or self.database_path

    @property
    def shard_ids(self) -> list[int] | None:
        """The shards this process runs (SEEDANCE_SHARD_IDS), or None: all of them."""
        return parse_shard_ids(self.seedance_shard_ids) if self.seedance_shard_ids else None

    @property
    def prices(self) -> dict[str, int]:
        return parse_prices(self.seedance_prices) if self.seedance_prices else dict(DEFAULT_PRICES)

    @property
    def skus(self) -> dict[str, Sku]:
        return parse_skus(self.seedance_skus)

    @property
    def gateway_concurrency(self) -> dict[str, int]:
        """The operator's in-flight ceiling per named gateway (SEEDANCE_GATEWAY_CONCURRENCY)."""
        return parse_gateway_concurrency(self.seedance_gateway_concurrency)

    @property
    def providers(self) -> tuple[str, ...]:
        """The ordered failover list (SEEDANCE_PROVIDERS); empty: one gateway."""
        return parse_providers(self.seedance_providers) if self.seedance_providers else ()

    def network_policy(self) -> NetworkPolicy:
        """Where downloads of results and members' URLs may go (see bot/media/fetch.py)."""
        return NetworkPolicy.parse(self.seedance_private_hosts)

    def result_hosts(self, provider: str) -> tuple[str, ...]:
        """The operator's host list for one gateway's results; empty: any public host."""
        return parse_result_hosts(self.seedance_result_hosts).get(provider, ())

    def model_for(self, provider: str) -> str | None:
        """SEEDANCE_MODEL when `provider` is SEEDANCE_PROVIDER, else None (that gateway's default).

        A model id belongs to one gateway: "seedance" on Anyfast means nothing to Runware, so a
        request sent to another gateway than the configured one must not carry it along.
        """
        return self.seedance_model if provider == self.seedance_provider else None

    def api_key(self, provider: str) -> str | None:
        value = getattr(self, f"{provider}_api_key", None)
        return value if isinstance(value, str) else None

    def base_url(self, provider: str) -> str:
        return str(getattr(self, f"{provider}_base_url"))

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, so messages and logs can be scrubbed of them."""
        values = [
            self.discord_token,
            self.anyfast_api_key,
            self.runware_api_key,
            self.magnific_api_key,
            self.hiapi_api_key,
            self.hiapi_callback_secret,
            self.seedance_webhook_secret,
            database_password(self.seedance_database_url),
        ]
        return tuple(v for v in values if v)


def database_password(url: str | None) -> str | None:
    """The password in a database URL, a secret like the keys (None when there is none)."""
    if not url:
        return None
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None


def parse_shard_ids(text: str) -> list[int]:
    """"0,2" → [0, 2]: distinct whole numbers from 0."""
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ValueError("use the form 0,1 (distinct shard numbers from 0, comma-separated)")
    return sorted(int(p) for p in parts)


def parse_prices(text: str) -> dict[str, int]:
    prices = dict(DEFAULT_PRICES)
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key.strip() not in DEFAULT_PRICES or not value.strip().isdigit():
            raise ValueError("use the form 480p=1,720p=2,1080p=4 (whole credits per second)")
        prices[key.strip()] = int(value)
    return prices


def parse_result_hosts(text: str) -> dict[str, tuple[str, ...]]:
    """"runware=.runware.ai|im.runware.ai,hiapi=cdn.hiapi.ai" → {gateway: hosts}."""
    table: dict[str, tuple[str, ...]] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, hosts = part.partition("=")
        name = name.strip().lower()
        listed = tuple(h.strip().lower() for h in hosts.split("|") if h.strip())
        if not sep or name not in PROVIDER_NAMES or name == "local" or not listed:
            raise ValueError("use the form runware=.runware.ai|im.runware.ai,hiapi=cdn.hiapi.ai "
                             f"(gateways: {', '.join(PROVIDER_NAMES[1:])})")
        table[name] = listed
    return table


#: The most jobs in flight one gateway may be given: a typo of 20000 is refused.
MAX_GATEWAY_CONCURRENCY = 1000


def parse_gateway_concurrency(text: str) -> dict[str, int]:
    """"runware=20,anyfast=8" → {gateway: jobs in flight at once}."""
    table: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if (not sep or name not in PROVIDER_NAMES or not value.isdigit()
                or not 1 <= int(value) <= MAX_GATEWAY_CONCURRENCY):
            raise ValueError(f"use the form runware=20,anyfast=8: a gateway "
                             f"({', '.join(PROVIDER_NAMES)}) and a whole number of jobs from 1 "
                             f"to {MAX_GATEWAY_CONCURRENCY}")
        table[name] = int(value)
    return table


def parse_providers(text: str) -> tuple[str, ...]:
    """"hiapi,runware,anyfast" → the gateways in failover order, each named once."""
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    if not names or len(set(names)) != len(names) or not set(names) <= set(PROVIDER_NAMES):
        raise ValueError(f"use the form hiapi,runware,anyfast: distinct gateways from "
                         f"{', '.join(PROVIDER_NAMES)}, in the order to try them")
    return names


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's report into one line per bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if not err["loc"]:  # a rule across variables: its message names them
                lines.append(msg)
                continue
            name = str(err["loc"][0]).upper()
            value = err.get("input")
            password = database_password(value) if isinstance(value, str) else None
            if password:
                value = value.replace(f":{password}@", ":***@")
            lines.append(f"{name}: {msg}, got {value!r}")
        raise ConfigError("; ".join(lines)) from None
