"""The lowest provider SDK versions ``pyproject.toml`` admits really run the channels.

A floor that is only written down drifts: ``twilio>=9.0`` admitted versions without
``TwilioServiceException`` (added in 9.10.0), and ``sendgrid>=6.11`` admitted 6.12.1 and 6.12.2,
which do not export ``EventWebhookHeader``. So this test creates a throwaway virtual environment
that sees the project's installed packages (a ``.pth`` line), installs exactly the floor of each
provider SDK into it (pip keeps what is already there and adds only what a floor needs besides,
e.g. ``ecdsa`` for older ``sendgrid``), and imports and builds the channels there.

It needs PyPI (or the pip index the machine is configured with); the first run downloads a few
wheels, later runs take them from pip's cache.
"""

from __future__ import annotations

import subprocess
import sysconfig
import tomllib
import venv
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROVIDER_SDKS = ("sendgrid", "twilio", "google-auth")
CHANNEL_MODULES = (
    "omnicart.channels.sendgrid_email",
    "omnicart.channels.twilio_sms",
    "omnicart.channels.fcm",
    "omnicart.api.sendgrid_webhook",
    "omnicart.api.twilio_webhooks",
)


def floors() -> dict[str, str]:
    """Each provider SDK's lowest admitted version, as ``pyproject.toml`` declares it (``>=X``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: dict[str, str] = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name in PROVIDER_SDKS:
            lows = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            assert len(lows) == 1, f"{line}: a provider SDK needs exactly one '>=' floor"
            found[requirement.name] = lows[0]
    assert set(found) == set(PROVIDER_SDKS)
    return found


def test_the_channels_import_and_build_with_the_lowest_provider_sdks_allowed(tmp_path: Path) -> None:
    pinned = [f"{name}=={version}" for name, version in floors().items()]
    throwaway = tmp_path / "floors"
    venv.create(throwaway, with_pip=False)
    python = str(throwaway / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The project's environment behind the throwaway one: its packages count as installed.
    Path(site, "project.pth").write_text(sysconfig.get_path("purelib") + "\n" + str(ROOT) + "\n")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pinned],
        capture_output=True, text=True, timeout=240,
    )
    assert install.returncode == 0, install.stderr
    probe = f"""
import importlib.metadata as md, sys
for module in {CHANNEL_MODULES!r}:
    __import__(module)
from omnicart.channels.registry import build_senders
from omnicart.settings import Settings
senders = build_senders(Settings(_env_file=None, sendgrid_api_key="SG.x", twilio_account_sid="AC" + "0" * 32,
                                 twilio_auth_token="t", twilio_from_number="+15005550006"))
assert senders["email"].provider == "sendgrid" and senders["sms"].provider == "twilio"
import sendgrid, twilio, google.auth
print(md.version("sendgrid"), twilio.__version__, google.auth.__version__, sendgrid.__file__)
"""
    run = subprocess.run([python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=120)

    assert run.returncode == 0, run.stderr[-3000:]
    sendgrid_version, twilio_version, google_auth_version, sendgrid_file = run.stdout.split()
    assert sendgrid_file.startswith(site), "the floor, not the project's newer copy, was imported"
    imported = [Version(v) for v in (sendgrid_version, twilio_version, google_auth_version)]
    assert imported == [Version(v) for v in floors().values()]
