"""Every knob in one place, read from the environment (and an optional ``.env`` file).

Defaults run the whole product on one machine; production is a matter of settings, never code:
point ``TEMPORAL_ADDRESS`` at a cluster, ``OMNICART_DATABASE_URL`` at a server database, and set a
provider's credentials to move a channel off the local outbox.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMNICART_", env_file=".env", extra="ignore")

    # Where the product keeps its local state (SQLite database, outbox, dev server database).
    data_dir: Path = Path("data")
    journeys_dir: Path = Path("journeys")
    task_queue: str = "omnicart"

    # Storage: an SQLAlchemy URL; SQLite under data_dir when unset.
    database_url: str | None = None

    # Ingest API.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_token: SecretStr | None = Field(default=None, description="Bearer token the ingest API requires.")
    max_body_bytes: int = 1_000_000
    max_batch_events: int = 1000
    public_url: str = Field(
        default="http://127.0.0.1:8080",
        description="Where providers reach our webhooks (status callbacks, unsubscribe links).",
    )

    # Continue-as-new once a customer's history passes this many events.
    max_history_events: int = 2000
    # How long one send attempt may run before Temporal retries it; the worker's ledger waits this
    # long before it treats an unfinished attempt as dead. Both sides must agree.
    send_timeout_seconds: float = 60.0
    # A send still retrying after this many attempts is logged as a warning and counted in the
    # ``omnicart_send_retries_past_alert`` metric, for an operator's alert.
    send_retry_alert_attempts: int = 10
    # Store every journey action for reports (``omnicart report``). Off only to measure its cost.
    record_analytics: bool = True

    # Local outbox: where messages go when no provider is configured for a channel.
    outbox_path: Path | None = None

    # SendGrid (email).
    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_from_email: str = "shop@example.com"
    sendgrid_from_name: str = "Omnicart Shop"
    sendgrid_sandbox: bool = False
    sendgrid_webhook_public_key: str | None = None
    unsubscribe_group_id: int | None = None

    # Twilio (SMS).
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str | None = Field(default=None, description="Tests point the SDK at a local server.")

    # Firebase Cloud Messaging (push).
    fcm_project_id: str | None = None
    fcm_service_account_file: Path | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"

    # The shop's own event types, declared like the built-in ones (omnicart/plan/events/).
    plan_dir: Path = Path("plan")

    # Secret for deterministic single-use discount codes and signed links.
    signing_secret: SecretStr = SecretStr("omnicart-dev-secret-change-me")

    # One event's JSON at most (omnicart.limits.MAX_EVENT_BYTES says why 32 KiB).
    max_event_bytes: int = 32 * 1024
    # Privacy (docs/PRIVACY.md). Master keys "id:base64,id:base64": the first encrypts, all decrypt.
    encryption_keys: SecretStr | None = Field(default=None, description="`omnicart keys new` prints one.")
    # Where customers' wrapped data keys live: the product database when unset.
    key_database_url: str | None = None
    data_key_cache_seconds: float = 30.0
    # The codec server (/codec): its own bearer token, and the Temporal UI origins allowed to call it.
    codec_token: SecretStr | None = None
    codec_cors_origins: list[str] = Field(default_factory=list)
    codec_without_token: bool = Field(default=False, description="Only `omnicart dev` (loopback) sets this.")
    # Delete message recipients, provider errors and outbox lines older than this; keep them when unset.
    retention_days: float | None = Field(default=None, gt=0)
    retention_interval_seconds: float = 3600.0
    # Observability (docs/OPERATIONS.md). Where the worker (and the API process) serve the Temporal
    # SDK's Prometheus metrics, e.g. "0.0.0.0:9464"; off when unset. Traces use the OTEL_* variables.
    metrics_address: str | None = None
    # How often a worker counts customers whose workflow task keeps failing (omnicart_customers_failing).
    failing_customers_interval_seconds: float = Field(default=60.0, gt=0)
    # How long a customer's interest in a sku (viewed it, had it in a cart, asked to be told) lasts
    # after the event that showed it: who a restock or price drop tells (omnicart.catalog.interest).
    interest_days: float = Field(default=90.0, gt=0)

    # Date-based triggers: how often the Temporal Schedule looks for customers due (omnicart.date_schedule).
    date_trigger_interval_minutes: float = Field(default=60.0, gt=0)
    # After an outage the schedule delivers the due dates it missed, at most this far back
    # (omnicart.date_coverage): a birthday a day late is kind, one a season late is not.
    date_trigger_max_catch_up_days: float = Field(default=3.0, gt=0)

    # The preference centre (omnicart.consent.preferences): how long a message's signed link may change
    # preferences (unsubscribing, RFC 8058 one-click included, works for ever).
    preference_link_days: float = Field(default=90.0, gt=0)

    # Connectors (docs/CONNECTORS.md): each is off (503) until its secret is set.
    shopify_api_secret: SecretStr | None = Field(default=None, description="The Shopify app's client secret.")
    shopify_api_version: str = "2025-10"
    woocommerce_webhook_secret: SecretStr | None = None
    # The shop's origins allowed to post checkouts from its pages, e.g. ["https://shop.example"].
    woocommerce_shop_origins: list[str] = Field(default_factory=list)
    woocommerce_checkout_rate: str = Field(default="20/minute", description="Per client address (limits syntax).")
    # Segment write keys accepted as Basic-auth user, comma separated: several sources may send.
    segment_write_keys: SecretStr | None = None
    # The shop's own Segment mapping (YAML); the built-in one when unset.
    segment_mapping_file: Path | None = None

    # The restock / price-drop fan-out (omnicart.fanout; docs/JOURNEYS.md, "Back in stock and price
    # drops"). A restock's wave tells at most this many interested customers per unit in stock, then
    # waits the interval and looks again.
    fanout_customers_per_unit: int = Field(default=3, ge=1)
    fanout_wave_interval_minutes: float = Field(default=15.0, gt=0)
    # Interested customers read (and events recorded) per delivery activity; signals in flight at once.
    fanout_page_size: int = Field(default=500, ge=1, le=5000)
    fanout_concurrency: int = Field(default=50, ge=1)
    # How often each worker starts fan-outs whose start failed at ingest (Temporal was down then).
    fanout_sweep_interval_seconds: float = Field(default=60.0, gt=0)

    # WhatsApp through Twilio (docs/DELIVERY.md): the approved WhatsApp sender, E.164 ("+15005550006");
    # uses the Twilio account above. Unset: WhatsApp goes to the outbox.
    twilio_whatsapp_from: str | None = None

    # Pacing (docs/DELIVERY.md): messages per second each channel's sender may take, e.g.
    # OMNICART_SEND_RATES='{"sms": 1, "whatsapp": 20, "email": 100}'. A channel listed here is sent
    # from its own task queue, rate-limited by the Temporal server across every worker.
    send_rates: dict[str, float] = Field(default_factory=dict)

    # The marketer's console (omnicart.console): its own listener, loopback unless said otherwise.
    console_address: str = Field(default="127.0.0.1:8090", description="host:port of the console.")
    console_secure_cookies: bool = Field(default=False, description="Mark session cookies Secure (behind HTTPS).")
    journey_exit_rate: float = Field(
        default=50.0, gt=0,
        description="Signals a second when a journey is paused with its runs exiting (omnicart.journey_exit).",
    )

    # In-store pick-up link a message prints next to a store that has the item (the template's
    # catalog[sku].pickup.pickup_url), with {sku} and {store_id}, e.g.
    # https://shop.example/pickup?sku={sku}&store={store_id}. Unset: the product's page.
    pickup_url: str | None = None

    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'omnicart.db'}"

    def outbox(self) -> Path:
        return self.outbox_path or self.data_dir / "outbox.jsonl"

    def key_database(self) -> str:
        return self.key_database_url or self.database()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
