"""A Hugging Face Hub-protocol server on loopback for tests: olah, offline, serving local git repos.

`olah <https://pypi.org/project/olah/>`_ is a Hub mirror server. With ``offline = true`` and a
``mirrors-path`` it never contacts huggingface.co and answers ``HEAD``/``GET
/{org}/{name}/resolve/{revision}/{file}`` from plain git repositories on disk, with the headers
``huggingface_hub.hf_hub_download`` relies on (``X-Repo-Commit``, ``ETag``; for Git LFS files the
ETag is the sha256, as on the Hub). So the real Hub client, cache and offline logic run end to
end against it; only the process on the other side of the socket is not huggingface.co.

Everything here stays on 127.0.0.1, is bounded in time and cleans up after itself.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

LFS_SUFFIXES = (".safetensors", ".bin", ".pt")
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,  # no user hooks, signing or templates leak into the test repos
    "GIT_AUTHOR_NAME": "videozoo tests",
    "GIT_AUTHOR_EMAIL": "tests@videozoo.invalid",
    "GIT_COMMITTER_NAME": "videozoo tests",
    "GIT_COMMITTER_EMAIL": "tests@videozoo.invalid",
}


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubRepo:
    """A model repo as olah's mirrors expect it: a git work tree at ``<mirrors>/models/<org>/<name>``.

    Weight files are committed the way the Hub stores them, as Git LFS pointers with the object
    under ``.git/lfs/objects`` (written by hand: no git-lfs binary needed).
    """

    def __init__(self, mirrors: Path, repo_id: str) -> None:
        self.repo_id = repo_id
        self.path = mirrors / "models" / repo_id
        self.path.mkdir(parents=True)
        self._git("init", "-q", "-b", "main")
        (self.path / ".gitattributes").write_text(
            "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
        )

    def commit(self, files: Mapping[str, bytes | Path], message: str = "update") -> str:
        """Write ``files`` (repo path -> content or a file to copy), commit them, return the commit hash."""
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self._lfs_pointer(data) if name.endswith(LFS_SUFFIXES) else data)
        self._git("add", "-A")
        self._git("commit", "-q", "-m", message)
        return self._git("rev-parse", "HEAD").strip()

    def _lfs_pointer(self, data: bytes) -> bytes:
        oid = hashlib.sha256(data).hexdigest()
        obj = self.path / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(data)
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()

    def _git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **_GIT_ENV},
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout


class HubServer:
    """olah on a free loopback port, offline, serving the repos made with :meth:`repo`.

    Use as a context manager; :attr:`endpoint` is what ``HF_ENDPOINT`` / ``endpoint=`` should be.
    """

    def __init__(self, root: Path, *, startup_timeout: float = 30.0) -> None:
        self.root = root
        self.mirrors = root / "mirrors"
        self.mirrors.mkdir(parents=True, exist_ok=True)
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = root / "olah-output.log"

    @property
    def endpoint(self) -> str:
        assert self.port is not None, "server not started"
        return f"http://127.0.0.1:{self.port}"

    def repo(self, repo_id: str) -> HubRepo:
        return HubRepo(self.mirrors, repo_id)

    def __enter__(self) -> HubServer:
        for _ in range(3):  # the free port can be taken between probing and olah binding it
            if self._start(free_loopback_port()):
                return self
        raise RuntimeError(f"olah did not start; its output:\n{self._log.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, port: int) -> bool:
        self.port = port
        config = self.root / "olah.toml"
        config.write_text(
            f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{self.root / "olah-cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\nmirror-netloc = "127.0.0.1:{port}"\n'
            f'mirror-lfs-netloc = "127.0.0.1:{port}"\n[accessibility]\noffline = true\n'
        )
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from olah.server import cli; cli()",
                    "--config",
                    str(config),
                    "--log-path",
                    str(self.root / "olah-logs"),
                ],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:  # uvicorn binds only after the app's startup finished, so accepting means ready
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(
            f"olah not listening on 127.0.0.1:{port} after {self.startup_timeout:g} s; output:\n"
            f"{self._log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None
