"""A real IMAP server on loopback: Debian's Dovecot, started for the tests in a directory of its
own (configuration, passwd-file users, Maildirs, logs), never the system service.

    server = DovecotServer().start()    # or the `imap_server` fixture of the root conftest
    inbox = server.user()               # a new user with an empty INBOX
    mailbox.imap_url = inbox.url        # imap://USER:PASSWORD@127.0.0.1:<free port>/INBOX
    inbox.append(raw_bytes)             # a real IMAP APPEND, as a mail server delivers it
    inbox.uidvalidity_change()          # the server renumbers the folder (doveadm)
    inbox.flags()                       # {uid: flags}: what a poll must not have changed
    server.stop()

Plain IMAP is enough on 127.0.0.1 (the poller goes without TLS only to this machine).
Run as root, Dovecot's own processes take its Debian users (dovecot, dovenull) and the mail
belongs to `nobody`; otherwise everything runs as the current user. The server's log is in
`server.log_path`; a server that does not come up fails with it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DOVECOT = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
DOVEADM = shutil.which("doveadm") or shutil.which("doveadm", path="/usr/bin:/usr/sbin")
HOST = "127.0.0.1"

CONFIG = """\
instance_name = aicmo-test-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class ImapUser:
    """One account of the test server, and what a test does with its mail."""

    server: DovecotServer
    name: str
    password: str

    def url(self, folder: str = "INBOX") -> str:
        return (
            f"imap://{quote(self.name, safe='')}:{quote(self.password, safe='')}@{HOST}:"
            f"{self.server.port}/{quote(folder)}"
        )

    def client(self):
        from imap_tools import MailBoxUnencrypted

        box = MailBoxUnencrypted(HOST, self.server.port, timeout=10)
        return box.login(self.name, self.password, initial_folder=None)

    def append(self, *mails: bytes, folder: str = "INBOX", arrived=None) -> None:
        """Deliver each mail by IMAP APPEND (the folder is created if need be); `arrived`
        (an aware datetime) is its internal date, now by default."""
        with self.client() as box:
            if not box.folder.exists(folder):
                box.folder.create(folder)
            for mail in mails:
                box.append(mail, folder, dt=arrived)

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[str, ...]]:
        """{UID: flags} of every mail in the folder, read without changing them."""
        with self.client() as box:
            box.folder.set(folder, readonly=True)
            return {int(m.uid): m.flags for m in box.fetch(headers_only=True, mark_seen=False)}

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as box:
            return box.folder.status(folder, ["UIDVALIDITY"])["UIDVALIDITY"]

    def uidvalidity_change(self, folder: str = "INBOX") -> int:
        """Give the folder a new UIDVALIDITY, as a server does when it rebuilds its index."""
        new = self.uidvalidity(folder) + 1000
        self.server.doveadm(
            "mailbox", "update", "-u", self.name, "--uid-validity", str(new), folder
        )
        return new


class DovecotServer:
    """Dovecot listening on 127.0.0.1 and a free port, in a temporary directory."""

    def __init__(self) -> None:
        self.port = 0
        self.root = Path()
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def config_path(self) -> Path:
        return self.root / "dovecot.conf"

    def start(self) -> DovecotServer:
        if DOVECOT is None:
            raise RuntimeError("needs Debian's dovecot-imapd: make system-deps")
        # World-traversable (not pytest's 0700 tmp dirs): the mail user must reach its home.
        self.root = Path(tempfile.mkdtemp(prefix="aicmo-dovecot-"))
        self.root.chmod(0o755)
        self.port = _free_port()
        self._write_config()
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_until_ready()
        return self

    def _write_config(self) -> None:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            users = {"internal_user": "dovecot", "internal_group": "dovecot",
                     "login_user": "dovenull", "mail_uid": nobody.pw_uid,
                     "mail_gid": nobody.pw_gid}  # fmt: skip
        else:
            me = pwd.getpwuid(os.getuid())
            group = me.pw_gid
            users = {"internal_user": me.pw_name, "internal_group": str(group),
                     "login_user": me.pw_name, "mail_uid": me.pw_uid, "mail_gid": group}  # fmt: skip
        home = self.root / "home"
        home.mkdir()
        if os.geteuid() == 0:
            os.chown(home, users["mail_uid"], users["mail_gid"])
        (self.root / "users").mkdir()
        self.config_path.write_text(
            CONFIG.format(root=self.root, host=HOST, port=self.port, **users)
        )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")
                raise RuntimeError(f"dovecot did not start: {err}{self._log()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on {HOST}:{self.port}{self._log()}")

    def _log(self) -> str:
        return f"\n{self.log_path.read_text()}" if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def user(self, name: str = "") -> ImapUser:
        """A new account with an empty INBOX: a passwd-file of its own (Dovecot opens it at
        the first login; it rereads a changed file only seconds later)."""
        name = name or f"user-{secrets.token_hex(4)}"
        password = f"pw-{secrets.token_urlsafe(12)}"
        (self.root / "users" / name).write_text(f"{name}:{{PLAIN}}{password}\n")
        return ImapUser(server=self, name=name, password=password)

    def doveadm(self, *args: str) -> None:
        result = subprocess.run(
            [DOVEADM, "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)}: {result.stderr.strip()}")
