"""The README stays true to the code: every setting and every denial reason is documented."""

from __future__ import annotations

from pathlib import Path

from authz.reasons import Reason
from authz.settings import AuthzSettings
from devkit.settings import DevSettings, StandinSettings
from metering.settings import MeteringSettings, ReceiverSettings
from portal.settings import PortalSettings
from tollway.settings import describe
from webhook.settings import WebhookSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme():
    """Each TOLLWAY_* variable the services read appears in the README's settings table."""
    classes = (AuthzSettings, DevSettings, WebhookSettings, StandinSettings, MeteringSettings,
               ReceiverSettings, PortalSettings)  # fmt: skip
    names = {var for cls in classes for var, _, _ in describe(cls)}
    missing = sorted(n for n in names if f"`{n}`" not in README)
    assert missing == []


def test_every_denial_reason_is_in_the_readme():
    """Each Reason value and its status code appear in the README's decision table."""
    for reason in Reason:
        assert f"| {reason.http_status} | `{reason.value}` |" in README, reason
