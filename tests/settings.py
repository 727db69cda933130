"""Test settings: the real settings, read from a controlled environment.

The environment is fixed before `aicmo_site.settings` is imported so that a developer's `.env`
or shell cannot change what the suite tests. DATABASE_URL is the one variable passed through:
`make test` runs the suite once on SQLite and once on PostgreSQL.
"""

import os
import tempfile

os.environ["AICMO_ENV_FILE"] = os.devnull
for _name in list(os.environ):
    if (
        _name.startswith(("AICMO_", "ANYMAIL_", "EMAIL_")) and _name != "AICMO_ENV_FILE"
    ) or _name in (
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
    ):
        del os.environ[_name]
os.environ["SECRET_KEY"] = "test-secret-key-" + "x7Qp2Lm9Zr4Tn8Vb3Wc6Yd1Fg5Hj0Ks" * 2
os.environ["AICMO_Q_SYNC"] = "1"
os.environ["AICMO_ARTIFACT_DIR"] = tempfile.mkdtemp(prefix="aicmo-test-artifacts-")

from aicmo_site.settings import *  # noqa: E402, F403

# Fast, deterministic hashing for test users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
