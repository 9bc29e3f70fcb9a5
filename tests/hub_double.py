"""A small local HTTP double of the Hugging Face Hub API, for push / pull tests (no hub is reachable from CI).

It speaks the subset of the Hub's HTTP API that `huggingface_hub` uses to create a repository, upload a folder
(every file "regular", i.e. inline base64 in the commit; no LFS / Xet), and download it back:

    POST /api/repos/create                              {name, organization, visibility, type}
    POST /api/validate-yaml                             README.md metadata check
    POST /api/models/{repo}/preupload/{rev}             -> uploadMode "regular" for every file
    POST /api/models/{repo}/commit/{rev}                ndjson: header, file (base64), deletedFile
    GET  /api/models/{repo}/revision/{rev}              repo info (sha, private, siblings)
    GET  /api/models/{repo}/tree/{rev}                  file listing
    HEAD / GET /{repo}/resolve/{rev}/{path}             file metadata / content

It records every request's method, path and Authorization header, so tests can check that the token was sent.
Point a client at it with ``HF_ENDPOINT=double.url`` set before `huggingface_hub` is imported (in a subprocess).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml


@dataclass
class Repo:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


class HubDouble:
    """Threaded HTTP server on 127.0.0.1 (free port) holding repos in memory; use as a context manager."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(hub: HubDouble):
    api_repo = re.compile(r"^/api/models/([^/]+/[^/]+)/(preupload|commit|revision|tree)/([^/]+)(?:/(.*))?$")
    resolve = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        # ------------------------------------------------------------------ plumbing
        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, payload=None, headers: dict | None = None, body: bytes | None = None) -> None:
            data = body if body is not None else json.dumps(payload if payload is not None else {}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if body is None else "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _not_found(self, code: str, message: str) -> None:
            self._send(404, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        def _record(self) -> None:
            with hub._lock:
                hub.requests.append(
                    {"method": self.command, "path": self.path, "authorization": self.headers.get("Authorization")}
                )

        def _repo(self, repo_id: str) -> Repo | None:
            return hub.repos.get(repo_id)

        # ------------------------------------------------------------------ routes
        def do_POST(self) -> None:
            self._record()
            path = urlsplit(self.path).path
            body = self._body()
            if path == "/api/repos/create":
                req = json.loads(body)
                repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                with hub._lock:
                    if repo_id in hub.repos:
                        return self._send(
                            409, {"error": "You already created this model repo", "url": f"{hub.url}/{repo_id}"}
                        )
                    hub.repos[repo_id] = Repo(private=req.get("visibility") == "private" or bool(req.get("private")))
                return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
            if path == "/api/validate-yaml":
                content = json.loads(body)["content"]
                try:
                    header = content.split("---", 2)[1] if content.startswith("---") else ""
                    yaml.safe_load(header)
                except (yaml.YAMLError, IndexError) as exc:
                    return self._send(400, {"error": f"invalid YAML metadata: {exc}"})
                return self._send(200, {"warnings": []})
            m = api_repo.match(path)
            if not m:
                return self._send(404, {"error": f"unknown route {path}"})
            repo_id, action = unquote(m.group(1)), m.group(2)
            repo = self._repo(repo_id)
            if repo is None:
                return self._not_found("RepoNotFound", f"Repository {repo_id} not found")
            if action == "preupload":
                files = json.loads(body)["files"]
                modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                return self._send(200, {"files": modes})
            if action == "commit":
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                with hub._lock:
                    for item in lines:
                        value = item["value"]
                        if item["key"] == "file":
                            repo.files[value["path"]] = base64.b64decode(value["content"])
                        elif item["key"] == "deletedFile":
                            repo.files.pop(value["path"], None)
                        elif item["key"] == "lfsFile":
                            return self._send(400, {"error": "the double only accepts regular uploads"})
                    digest = hashlib.sha1(json.dumps(sorted((k, len(v)) for k, v in repo.files.items())).encode())
                    digest.update(str(len(repo.commits)).encode())
                    repo.commits.append(digest.hexdigest())
                return self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{repo.sha}", "commitOid": repo.sha})
            return self._send(405, {"error": "method not allowed"})

        def do_GET(self) -> None:
            self._record()
            path = urlsplit(self.path).path
            m = api_repo.match(path)
            if m:
                repo_id, action = unquote(m.group(1)), m.group(2)
                repo = self._repo(repo_id)
                if repo is None:
                    return self._not_found("RepoNotFound", f"Repository {repo_id} not found")
                if action == "revision":
                    siblings = [{"rfilename": name} for name in sorted(repo.files)]
                    return self._send(
                        200, {"id": repo_id, "sha": repo.sha, "private": repo.private, "siblings": siblings}
                    )
                if action == "tree":
                    entries = [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in sorted(repo.files.items())
                    ]
                    return self._send(200, entries)
            m = resolve.match(path)
            if m:
                repo_id, name = unquote(m.group(1)), unquote(m.group(3))
                repo = self._repo(repo_id)
                if repo is None:
                    return self._not_found("RepoNotFound", f"Repository {repo_id} not found")
                if name not in repo.files:
                    return self._not_found("EntryNotFound", f"{name} does not exist in {repo_id}")
                data = repo.files[name]
                headers = {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": repo.sha}
                return self._send(200, headers=headers, body=data)
            return self._send(404, {"error": f"unknown route {path}"})

        do_HEAD = do_GET

    return Handler
