"""A cryptographically secure random stream: ChaCha20 keystream via ``cryptography``.

fedsynth needs randomness in two places where a predictable or low-entropy random source is a
privacy bug, not a quality issue:

* **SecAgg+ masks** (:mod:`fedsynth.common.protocol.secure_masks`): a mask must be unpredictable to
  anyone who lacks the full shared secret, and both ends must expand the same secret into
  the same mask, so the stream is *keyed* (HKDF-SHA256 of the secret) and deterministic.
* **DP-SGD noise and Poisson sampling** (:mod:`fedsynth.common.dp.dp_sgd`): the Gaussian noise
  and the batch membership must be unpredictable to the recipient of the update, so the
  stream is keyed from ``os.urandom``.

ChaCha20 (RFC 8439) is a stream cipher whose keystream is indistinguishable from uniform
without the 256-bit key; encrypting zeros yields that keystream. One (key, nonce) pair
covers 2**32 blocks of 64 bytes (256 GiB); :class:`ChaChaStream` rekeys from its own stream
long before that (every 2**36 bytes), so it never wraps the block counter.

Everything built on the raw bytes is exact and unbiased: integers below ``m`` by rejection
sampling, uniforms with 53 random bits, normals by Box-Muller in float64. The normals' maths
runs in torch, whose vectorised log/sin/cos take about half of numpy's time: a DP-SGD step
draws one normal per weight (docs/benchmarks.md).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_REKEY_AFTER = 1 << 36  # bytes drawn under one key before rekeying from the stream itself
_NONCE = bytes(16)  # every key is fresh (random or HKDF of a distinct secret): a fixed nonce is safe
_TWO_PI = 2.0 * np.pi


def derive_key(secret: bytes, info: bytes) -> bytes:
    """A 256-bit ChaCha20 key from *all* bytes of ``secret`` (HKDF-SHA256, domain ``info``)."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) == 0:
        raise ValueError("a key needs a non-empty byte-string secret")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(bytes(secret))


class ChaChaStream:
    """Deterministic ChaCha20 keystream for one 32-byte key, with typed draws on top."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("ChaCha20 needs a 32-byte key")
        self._set_key(key)

    @classmethod
    def from_os(cls) -> "ChaChaStream":
        """A stream keyed by 32 bytes from the operating system's CSPRNG."""
        return cls(os.urandom(32))

    @classmethod
    def from_secret(cls, secret: bytes, info: bytes) -> "ChaChaStream":
        return cls(derive_key(secret, info))

    def _set_key(self, key: bytes) -> None:
        self._enc = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()
        self._used = 0

    # ------------------------------------------------------------------ raw bytes
    def bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must be >= 0")
        if self._used + n > _REKEY_AFTER:
            self._set_key(self._enc.update(bytes(32)))
        self._used += n
        return self._enc.update(bytes(n))

    def uint64(self, n: int) -> np.ndarray:
        return np.frombuffer(self.bytes(8 * n), dtype="<u8").astype(np.uint64, copy=False)

    # ------------------------------------------------------------------ typed draws
    def integers_below(self, m: int, n: int) -> np.ndarray:
        """``n`` independent uniform integers in ``[0, m)`` (int64), without modulo bias.

        A power of two takes the low bits of each 64-bit word; any other ``m`` rejects
        words at or above the largest multiple of ``m`` below 2**64 (acceptance > 1/2,
        in practice ~1 for the moduli SecAgg+ uses).
        """
        if not 1 <= m <= 1 << 63:
            raise ValueError(f"modulus must be in [1, 2**63], got {m}")
        if m & (m - 1) == 0:
            return (self.uint64(n) & np.uint64(m - 1)).astype(np.int64)
        limit = np.uint64(((1 << 64) // m) * m - 1)  # accept w <= limit
        out = np.empty(0, dtype=np.uint64)
        while out.size < n:
            need = n - out.size
            words = self.uint64(need + need // 16 + 8)
            out = np.concatenate([out, words[words <= limit]])
        return (out[:n] % np.uint64(m)).astype(np.int64)

    def uniform(self, n: int) -> np.ndarray:
        """``n`` float64 uniforms in (0, 1): 53 random bits each, never exactly 0 or 1."""
        return ((self.uint64(n) >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))

    def normal(self, n: int) -> np.ndarray:
        """``n`` standard normals (float64), Box-Muller on pairs of 53-bit uniforms."""
        return self.normal_tensor(n).numpy()

    def normal_tensor(self, n: int) -> torch.Tensor:
        """The same draws as :meth:`normal`, as a float64 torch tensor (no copy)."""
        pairs = (n + 1) // 2
        u = torch.from_numpy(self.uniform(2 * pairs))
        r, theta = u[:pairs], u[pairs:]
        r.log_().mul_(-2.0).sqrt_()
        theta.mul_(_TWO_PI)
        out = torch.empty(2 * pairs, dtype=torch.float64)
        torch.cos(theta, out=out[:pairs])
        torch.sin(theta, out=out[pairs:])
        out[:pairs] *= r
        out[pairs:] *= r
        return out[:n]
