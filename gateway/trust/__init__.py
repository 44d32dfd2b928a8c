"""Who signed: the trust store, X.509 path validation, the CRL watch and the exchange CA."""
