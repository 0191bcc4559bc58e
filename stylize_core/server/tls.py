"""The server's TLS: a self-signed certificate made with `cryptography` on first start and kept, and
the context that serves it.

Clients do not check the certificate against a certificate authority, nor its names: they pin the
SHA-256 fingerprint of its DER bytes, which the server writes into its address
(tls://TOKEN@HOST:PORT#sha256=FINGERPRINT), and compare it before they send the token. So the
certificate is kept as long as its files are: a new one means every client needs the new address.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
from pathlib import Path

from ..contract.paths import write_atomically
from .listeners import StartError, own_folder, read_private

COMMON_NAME = "stylize-core server"
VALID_YEARS = 20
"""From a day before it is made (clocks differ) to twenty years after, as before."""


def tls_context(folder: Path, host: str = "") -> tuple[ssl.SSLContext, str]:
    """The server's TLS context and its certificate's SHA-256 fingerprint (hex). The certificate
    and its key are made on first start into `folder` (the key only this user may read) and kept,
    so that clients can pin it; `host` is the address listened on, named in a new certificate."""
    own_folder(folder)
    certificate, key = folder / "cert.pem", folder / "key.pem"
    if not (certificate.exists() and key.exists()):
        pem_certificate, pem_key = make_self_signed(COMMON_NAME, served_names(host))
        write_atomically(key, pem_key, 0o600)
        write_atomically(certificate, pem_certificate, 0o600)
    read_private(key)  # ours, and others may not read it
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, key)
        pem = certificate.read_text(encoding="ascii")
        pinned = fingerprint(pem)
    except (ssl.SSLError, ValueError, OSError) as error:
        raise StartError(f"the TLS certificate or key in {folder} is unusable ({error}): remove both files, and "
                         "new ones are made at the next start (clients then need the new address)") from None
    return context, pinned


def fingerprint(pem_certificate: str) -> str:
    """The SHA-256 of the certificate's DER bytes, in hex: what a client pins (contract/protocol.py, tls_connect)."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem_certificate)).hexdigest()


def served_names(host: str = "") -> list[str]:
    """The names a new certificate gives in its subjectAltName: this computer's name, localhost and
    the loopback addresses, and the address listened on when it is a particular one."""
    names = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    if host and host not in ("0.0.0.0", "::"):
        names.append(host)
    return list(dict.fromkeys(name for name in names if name and name.isascii()))


def make_self_signed(common_name: str, names: list[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for a new EC P-256 key: an X.509 v3 certificate signed
    with it (ECDSA with SHA-256), not a CA, naming `names` (host names or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(years_later(now, VALID_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([alternative_name(name) for name in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def alternative_name(name: str):
    from cryptography import x509
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def years_later(moment: datetime.datetime, years: int) -> datetime.datetime:
    """The same day `years` later; 28 February for a 29 February."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)
