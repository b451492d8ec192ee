"""RTMP stream authentication: stream keys, nginx-rtmp callbacks, brute-force lockout and the live registry."""
