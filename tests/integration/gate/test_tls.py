"""`vsm-mcp serve --ssl-certfile --ssl-keyfile`: HTTPS with a certificate the test makes itself."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.gate.procs import base_env, serving
from tests.ports import free_port
from tests.procs import wait_ready

pytestmark = pytest.mark.anyio


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vsm-mcp test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


async def test_serve_over_tls(tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "serve.log"
    trust = ssl.create_default_context(cafile=str(certfile))
    args = ["--port", str(port), "--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)]
    with serving(args, base_env(tmp_path), log) as proc:
        url = f"https://127.0.0.1:{port}"
        await wait_ready(url, proc, log, verify=trust, path="/healthz")
        async with httpx.AsyncClient(verify=trust, timeout=30) as http:
            r = await http.post(f"{url}/v1/tools/echo__echo/call", json={"arguments": {"text": "over tls"}})
            assert r.status_code == 200 and r.json()["content"][0]["text"] == "over tls"
        async with httpx.AsyncClient(timeout=10) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{port}/healthz")  # plain HTTP is not spoken
    assert "https://" in log.read_text()


def test_one_of_the_pair_is_a_clear_error(tmp_path: Path) -> None:
    from tests.integration.gate.procs import vsm

    certfile, _ = self_signed(tmp_path)
    out = vsm(["serve", "--port", str(free_port()), "--ssl-certfile", str(certfile)], base_env(tmp_path))
    assert out.returncode != 0
    assert "VSM_SSL_KEYFILE" in out.stderr and "Traceback" not in out.stderr
