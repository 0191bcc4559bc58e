"""A self-signed TLS certificate, made with the standard library alone (no OpenSSL tool, no
`cryptography` package): an RSA-2048 key and an X.509 v3 certificate signed with it
(sha256WithRSAEncryption), both as PEM. Clients do not check it against a certificate
authority: they pin its SHA-256 fingerprint, which the server prints in its address."""

from __future__ import annotations

import base64
import datetime
import hashlib
import math
import secrets

PUBLIC_EXPONENT = 65537
KEY_BITS = 2048
VALID_YEARS = 20
SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]

# Object identifiers.
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
SHA256 = "2.16.840.1.101.3.4.2.1"
COMMON_NAME = "2.5.4.3"
BASIC_CONSTRAINTS = "2.5.29.19"


def make_self_signed(common_name: str) -> tuple[str, str]:
    """(certificate PEM, private key PEM) for a new RSA key."""
    n, d, p, q = rsa_key()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    name = sequence(der_set(sequence(oid(COMMON_NAME), utf8(common_name))))
    algorithm = sequence(oid(SHA256_WITH_RSA), NULL)
    public_key = sequence(sequence(oid(RSA_ENCRYPTION), NULL), bit_string(sequence(integer(n), integer(PUBLIC_EXPONENT))))
    not_a_ca = sequence(oid(BASIC_CONSTRAINTS), tlv(0x01, b"\xff"), octet_string(sequence()))
    tbs = sequence(
        explicit(0, integer(2)),  # version 3
        integer(secrets.randbits(63) | 1),
        algorithm,
        name,
        sequence(time_value(now - datetime.timedelta(days=1)), time_value(now.replace(year=now.year + VALID_YEARS))),
        name,
        public_key,
        explicit(3, sequence(not_a_ca)),
    )
    certificate = sequence(tbs, algorithm, bit_string(sign(tbs, n, d)))
    key = sequence(integer(0), *(integer(v) for v in (n, PUBLIC_EXPONENT, d, p, q, d % (p - 1), d % (q - 1),
                                                      pow(q, -1, p))))
    return pem("CERTIFICATE", certificate), pem("RSA PRIVATE KEY", key)


def rsa_key() -> tuple[int, int, int, int]:
    while True:
        p, q = prime(KEY_BITS // 2), prime(KEY_BITS // 2)
        n = p * q
        if p != q and n.bit_length() == KEY_BITS:
            totient = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
            if math.gcd(PUBLIC_EXPONENT, totient) == 1:
                return n, pow(PUBLIC_EXPONENT, -1, totient), p, q


def prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (3 << (bits - 2)) | 1  # top two bits set: p*q has 2*bits bits
        if all(candidate % small for small in SMALL_PRIMES) and probably_prime(candidate):
            return candidate


def probably_prime(n: int, rounds: int = 40) -> bool:
    """Miller-Rabin with random bases: a composite passes with probability below 4**-rounds."""
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def sign(message: bytes, n: int, d: int) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, 8.2)."""
    digest_info = sequence(sequence(oid(SHA256), NULL), octet_string(hashlib.sha256(message).digest()))
    size = (n.bit_length() + 7) // 8
    encoded = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    return pow(int.from_bytes(encoded, "big"), d, n).to_bytes(size, "big")


# --- DER (X.690), only what a certificate needs -------------------------------------------------------------

NULL = b"\x05\x00"


def tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def der_set(*parts: bytes) -> bytes:
    return tlv(0x31, b"".join(parts))


def integer(value: int) -> bytes:
    """A non-negative INTEGER: a leading zero byte keeps the top bit from meaning a sign."""
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    numbers = [int(part) for part in dotted.split(".")]
    body = bytearray([40 * numbers[0] + numbers[1]])
    for number in numbers[2:]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, bytes(body))


def utf8(text: str) -> bytes:
    return tlv(0x0C, text.encode("utf-8"))


def octet_string(data: bytes) -> bytes:
    return tlv(0x04, data)


def bit_string(data: bytes) -> bytes:
    return tlv(0x03, b"\x00" + data)


def explicit(number: int, content: bytes) -> bytes:
    return tlv(0xA0 + number, content)


def time_value(moment: datetime.datetime) -> bytes:
    """UTCTime until 2049, GeneralizedTime from 2050 (RFC 5280, 4.1.2.5)."""
    if moment.year < 2050:
        return tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def pem(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
