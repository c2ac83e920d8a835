"""The production nginx configuration (`deployments/compose/nginx.conf`) with Debian's nginx:
it passes `nginx -t`, and a streamed completion through it over TLS arrives chunk by chunk
(no proxy buffering), with the security headers, while /metrics stays inside."""

import pathlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

from conftest import EXAMPLE_CONFIG, Gateway, _free_port, example_key

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONF = ROOT / "deployments" / "compose" / "nginx.conf"
SLOW_PROVIDER = """apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {name: slow}
spec:
  type: fake
  fake: {response: "one two three four five", chunks: 5, chunkInterval: 300ms}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {name: slow}
spec:
  routes:
  - model: slow
    targets: [{provider: slow}]
"""


@pytest.fixture()
def proxied():
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not pathlib.Path(nginx).exists():
        pytest.fail("nginx not found: tests/run-all.sh installs Debian's nginx-light")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        config = tmp / "config"
        config.mkdir()
        for name in ("api-keys.yaml",):
            shutil.copy(EXAMPLE_CONFIG / name, config / name)
        (config / "slow.yaml").write_text(SLOW_PROVIDER)
        gateway = Gateway(config)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
                       check=True, capture_output=True)
        http_port, tls_port = _free_port(), _free_port()
        text = CONF.read_text()
        for old, new in [("server gateway-1:8000", f"server 127.0.0.1:{gateway.port}"),
                         ("server gateway-2:8000", f"server 127.0.0.1:{gateway.port}"),
                         ("listen 443 ssl", f"listen 127.0.0.1:{tls_port} ssl"),
                         ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                         ("/etc/nginx/ssl/", f"{tmp}/"), ("/var/log/nginx/", f"{tmp}/")]:
            assert old in text, old
            text = text.replace(old, new)
        (tmp / "nginx.conf").write_text(text)
        command = [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                   "-g", f"pid {tmp}/nginx.pid; error_log {tmp}/error.log;"]
        check = subprocess.run(command + ["-t"], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                                    "-g", f"pid {tmp}/nginx.pid; error_log {tmp}/error.log; daemon off;"])
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield tls_port, http_port
        finally:
            process.terminate()
            process.wait()
            gateway.stop()


def request(port: int, raw: bytes) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    sock.sendall(raw)
    return sock


def test_a_stream_through_nginx_arrives_chunk_by_chunk(proxied):
    tls_port, _ = proxied
    body = b'{"model": "slow", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
           b"Authorization: Bearer " + example_key().encode() + b"\r\nConnection: close\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    started = time.monotonic()
    sock = request(tls_port, raw)
    arrivals, received = [], b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        received += data
        if b"data: {" in data:
            arrivals.append(time.monotonic() - started)
    head = received.split(b"\r\n\r\n", 1)[0].decode().lower()
    assert head.startswith("http/1.1 200"), head
    assert "strict-transport-security" in head and "x-content-type-options: nosniff" in head
    assert received.count(b"data: {") >= 5 and b"data: [DONE]" in received
    # Five chunks 300 ms apart: unbuffered, the first arrives long before the last.
    assert arrivals[-1] - arrivals[0] > 0.8, arrivals


def test_metrics_stay_inside_and_plain_http_redirects(proxied):
    tls_port, http_port = proxied
    sock = request(tls_port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 404")
    with socket.create_connection(("127.0.0.1", http_port), timeout=5) as plain:
        plain.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert plain.recv(65536).startswith(b"HTTP/1.1 301")
