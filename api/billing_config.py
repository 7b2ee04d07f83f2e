"""Billing's configuration: the Stripe keys (from settings or secret files), the API base, the seller.

Billing is off unless a Stripe secret key is configured; the webhook needs its own signing secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from api.settings import Settings, SettingsError


@dataclass(frozen=True, slots=True)
class BillingConfig:
    """What billing needs at run time; ``repr`` never shows a secret."""

    secret_key: str = ""
    webhook_secret: str = ""
    api_base: str = ""
    seller: str = "FR"

    @property
    def enabled(self) -> bool:
        """Plans and payments go through Stripe (a secret key is configured)."""
        return bool(self.secret_key)

    def __repr__(self) -> str:
        return f"BillingConfig(enabled={self.enabled}, webhook={bool(self.webhook_secret)}, api_base={self.api_base!r})"


def _secret(value: str, file: str, name: str) -> str:
    if value and file:
        raise SettingsError(f"set OWNLLM_{name} or OWNLLM_{name}_FILE, not both")
    if not file:
        return value.strip()
    try:
        return Path(file).read_text().strip()
    except OSError as exc:
        raise SettingsError(f"OWNLLM_{name}_FILE {file!r} cannot be read: {exc.strerror}") from None


def billing_config(settings: Settings) -> BillingConfig:
    """The billing configuration of these settings (secret files read once, at start)."""
    return BillingConfig(
        secret_key=_secret(settings.stripe_secret_key, settings.stripe_secret_key_file, "STRIPE_SECRET_KEY"),
        webhook_secret=_secret(
            settings.stripe_webhook_secret, settings.stripe_webhook_secret_file, "STRIPE_WEBHOOK_SECRET"
        ),
        api_base=settings.stripe_api_base,
        seller=settings.seller_jurisdiction,
    )
