"""Development settings: the embedded defaults of config/settings/base.py."""

from config.settings.base import *  # noqa: F403
