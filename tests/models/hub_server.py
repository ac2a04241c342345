"""A small Hugging Face Hub on loopback: the endpoints `HfApi.create_repo` and `upload_folder` call.

It answers over real HTTP the way the Hub does for these requests (as huggingface_hub 1.x/2.x sends
them, see its `hf_api.py` and `_commit_api.py`):

- ``POST /api/repos/create`` (JSON ``name``, ``organization``, ``visibility``): 200 with the repo URL,
  or 409 (with the URL) when it exists;
- ``GET /api/models/{ns}/{name}[/revision/{rev}]``: repo info (create_repo's exist_ok fallback);
- ``POST /api/models/{ns}/{name}/branch/{branch}``: create a branch from main (409 if it exists);
- ``POST /api/validate-yaml``: checks the README front matter is a YAML mapping;
- ``POST /api/models/{ns}/{name}/preupload/{rev}``: every file is ``"regular"``, so its bytes come
  inline in the commit (no LFS or Xet storage to emulate);
- ``POST /api/models/{ns}/{name}/commit/{rev}``: the NDJSON commit (a header line, then one
  ``file`` line per file with base64 content); stores the files under the revision.

Every request must carry ``Authorization: Bearer <token>`` with the server's token, else 401, as
the Hub answers a missing or wrong write token. Received files are kept in `LoopbackHub.repos`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

USER = "alice"


@dataclass
class Repo:
    private: bool
    branches: dict[str, dict[str, bytes]] = field(default_factory=lambda: {"main": {}})
    commits: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LoopbackHub:
    """The server's state: its URL, the accepted token, the repositories and every request seen."""

    url: str
    token: str
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)


def _handler(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            self._body()
            self._reply(401, {"error": "Invalid credentials in Authorization header"})
            return False

        def _repo_path(self, parts: list[str]) -> tuple[str, Repo | None, list[str]]:
            repo_id = f"{parts[2]}/{parts[3]}"
            return repo_id, hub.repos.get(repo_id), parts[4:]

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            hub.requests.append(("GET", path))
            if not self._authorised():
                return
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if len(parts) >= 4 and parts[:2] == ["api", "models"]:
                repo_id, repo, rest = self._repo_path(parts)
                if repo is None:
                    self._reply(404, {"error": "Repository not found"})
                    return
                revision = rest[1] if len(rest) >= 2 and rest[0] == "revision" else "main"
                sha = repo.commits[-1]["oid"] if repo.commits else "0" * 40
                self._reply(200, {"id": repo_id, "private": repo.private, "sha": sha, "siblings": [
                    {"rfilename": name} for name in sorted(repo.branches.get(revision, {}))]})
                return
            self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            hub.requests.append(("POST", path))
            if not self._authorised():
                return
            body = self._body()
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts == ["api", "repos", "create"]:
                payload = json.loads(body)
                repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
                url = f"{hub.url}/{repo_id}"
                if repo_id in hub.repos:
                    self._reply(409, {"error": "You already created this model repo", "url": url})
                    return
                hub.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
                self._reply(200, {"url": url, "name": repo_id})
                return
            if parts == ["api", "validate-yaml"]:
                content = json.loads(body)["content"]
                meta = yaml.safe_load(content.split("---")[1]) if content.startswith("---") else {}
                if not isinstance(meta, dict):
                    self._reply(400, {"errors": [{"message": "metadata must be a YAML mapping"}], "warnings": []})
                else:
                    self._reply(200, {"errors": [], "warnings": []})
                return
            if len(parts) >= 6 and parts[:2] == ["api", "models"]:
                repo_id, repo, (action, *rest) = self._repo_path(parts)
                revision = "/".join(rest) or "main"
                if repo is None:
                    self._reply(404, {"error": "Repository not found"})
                elif action == "branch":
                    if revision in repo.branches:
                        self._reply(409, {"error": "Reference already exists"})
                    else:
                        repo.branches[revision] = dict(repo.branches["main"])
                        self._reply(200, {})
                elif revision not in repo.branches:
                    self._reply(404, {"error": f"Revision not found: {revision}"})
                elif action == "preupload":
                    files = json.loads(body)["files"]
                    self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                                 "oid": None} for f in files]})
                elif action == "commit":
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    header, operations = lines[0], lines[1:]
                    assert header["key"] == "header", header
                    received = {}
                    for operation in operations:
                        assert operation["key"] == "file" and operation["value"]["encoding"] == "base64", operation
                        received[operation["value"]["path"]] = base64.b64decode(operation["value"]["content"])
                    repo.branches[revision].update(received)
                    oid = hashlib.sha1(body).hexdigest()
                    repo.commits.append({"oid": oid, "revision": revision, "summary": header["value"]["summary"],
                                         "files": sorted(received)})
                    self._reply(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                      "pullRequestUrl": None})
                else:
                    self._reply(404, {"error": f"unknown action {action}"})
                return
            self._reply(404, {"error": "not found"})

    return Handler


@contextmanager
def loopback_hub(token: str = "hf_test_write_token") -> Iterator[LoopbackHub]:
    """Serve a `LoopbackHub` on 127.0.0.1 (a free port) for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    hub = LoopbackHub(url=f"http://127.0.0.1:{server.server_port}", token=token)
    server.RequestHandlerClass = _handler(hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
