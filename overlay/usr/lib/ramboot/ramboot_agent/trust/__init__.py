"""Image signatures as iPXE's imgverify checks them: DER, X.509, RSA/ECDSA, CMS, trusted roots.

Pure standard library. Imported only when a script runs `imgverify`.
"""


class TrustError(ValueError):
    """A signature, certificate or trust setting is unusable; the message says why."""
