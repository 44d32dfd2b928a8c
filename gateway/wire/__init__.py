"""Standard encodings with no exchange policy: base64url, RFC 8785, JWS, keys, RFC 9162, SD-JWT."""
